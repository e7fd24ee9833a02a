"""confnet draw: DOT text (boxes, ellipses, shapes, in-place blobs, phases) and rendering with
Graphviz's dot where it is installed, a one-line error where it is not."""

import shutil

import pytest
from click.testing import CliRunner

from confnet import draw
from confnet.cli import main
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io

NET = """name: "drawn"
layer { name: "train_in" type: "Input" top: "data" top: "label" include { phase: TRAIN }
        input_param { shape { dim: 4 dim: 1 dim: 8 dim: 8 } shape { dim: 4 } } }
layer { name: "test_in" type: "Input" top: "data" top: "label" include { phase: TEST }
        input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 5 stride: 1
                            weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 2 } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc"
        include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def param():
    return io.parse_text(NET, pb.NetParameter)


def test_dot_for_one_phase_with_shapes():
    p = param()
    text = draw.net_to_dot(p, "TRAIN", "TB", draw.blob_shapes(p, "TRAIN"))
    assert text.startswith('digraph "drawn" {') and "rankdir=TB;" in text
    assert "test_in" not in text and "acc" not in text
    assert 'label="conv\\n(Convolution)\\nnum_output 3\\nkernel_size 5\\nstride 1"' in text
    assert "xavier" not in text                          # fillers stay out of the boxes
    assert 'label="conv\\n4x3x4x4"' in text
    assert text.count('label="conv\\n4x3x4x4"') == 2     # ReLU in place: a second ellipse
    assert '"blob 2 conv" -> "layer 2 relu"' in text and '"layer 2 relu" -> "blob 3 conv"' in text
    assert '"blob 3 conv" -> "layer 3 fc"' in text


def test_dot_for_all_phases_marks_phases_and_both_shapes():
    p = param()
    text = draw.net_to_dot(p, "ALL", "LR", draw.blob_shapes(p, "ALL"))
    assert "(Input, TRAIN)" in text and "(Input, TEST)" in text and "(Accuracy, TEST)" in text
    assert "4x1x8x8 (TRAIN)\\n2x1x8x8 (TEST)" in text
    assert text.count('label="data') == 1                # both Input layers feed one ellipse


def test_dot_without_shapes_when_the_net_cannot_be_built(caplog):
    p = io.parse_text('name: "n" layer { name: "d" type: "Data" top: "x" '
                      'data_param { source: "nowhere_lmdb" batch_size: 1 } }', pb.NetParameter)
    shapes = draw.blob_shapes(p, "TRAIN")
    assert shapes == {}
    assert 'label="x"' in draw.net_to_dot(p, "TRAIN", "LR", shapes)


def test_quotes_are_escaped():
    p = io.parse_text('name: "a \\"q\\"" layer { name: "in\\\\x" type: "Input" top: "t" '
                      'input_param { shape { dim: 1 } } }', pb.NetParameter)
    text = draw.net_to_dot(p)
    assert 'digraph "a \\"q\\"" {' in text and '"layer 0 in\\\\x"' in text


def run(args):
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_draw_dot_command(tmp_path):
    model = tmp_path / "net.prototxt"
    model.write_text(NET)
    code, output = run(["draw", str(model), str(tmp_path / "net.dot"), "--phase", "TEST"])
    assert code == 0, output
    assert "(Accuracy)" in (tmp_path / "net.dot").read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("name, magic", [("net.png", b"\x89PNG"), ("net.svg", b"<?xml")])
def test_draw_with_graphviz(tmp_path, name, magic):
    model = tmp_path / "net.prototxt"
    model.write_text(NET)
    code, output = run(["draw", str(model), str(tmp_path / name)])
    assert code == 0, output
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_draw_png_without_graphviz_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    model = tmp_path / "net.prototxt"
    model.write_text(NET)
    code, output = run(["draw", str(model), str(tmp_path / "net.png")])
    assert code == 1
    lines = [line for line in output.splitlines() if line.startswith("confnet: error:")]
    assert len(lines) == 1 and "needs Graphviz's 'dot' program" in lines[0]
    assert not (tmp_path / "net.png").exists()
