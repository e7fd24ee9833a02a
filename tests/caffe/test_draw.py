"""caffe.draw: the DOT text of a NetParameter by phase, and rendering through Graphviz (an
error naming the way out where Graphviz is not installed)."""

import shutil

import pytest

from confnet import caffe
from confnet.caffe import draw
from confnet.errors import ConfnetError
from confnet.proto import io

NET = """name: "drawn"
layer { name: "train_in" type: "Input" top: "data" include { phase: TRAIN }
        input_param { shape { dim: 4 dim: 3 } } }
layer { name: "test_in" type: "Input" top: "data" include { phase: TEST }
        input_param { shape { dim: 2 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 7 } }
"""


def net():
    return io.parse_text(NET, caffe.proto.caffe_pb2.NetParameter)


def test_graph_text_by_phase():
    every = draw.get_pydot_graph(net(), "TB").to_string()
    assert every.startswith('digraph "drawn" {') and "rankdir=TB;" in every
    assert "train_in" in every and "test_in" in every and "num_output 7" in every
    train = draw.get_pydot_graph(net(), "LR", phase=caffe.TRAIN).to_string()
    assert "train_in" in train and "test_in" not in train
    assert draw.draw_net(net(), "LR", ext="dot", phase=caffe.TEST).decode().count("test_in")
    with pytest.raises(ConfnetError, match="phase must be caffe.TRAIN, caffe.TEST or None"):
        draw.get_pydot_graph(net(), "LR", phase=5)
    with pytest.raises(ConfnetError, match="rankdir must be LR, TB, BT or RL"):
        draw.get_pydot_graph(net(), "XY")


def test_draw_net_to_file(tmp_path):
    out = tmp_path / "net.dot"
    draw.draw_net_to_file(net(), str(out), phase=caffe.TRAIN)
    assert out.read_text() == draw.get_pydot_graph(net(), "LR", phase=caffe.TRAIN).to_string()
    with pytest.raises(ConfnetError, match="cannot tell the format"):
        draw.draw_net_to_file(net(), str(tmp_path / "net"))
    png = tmp_path / "net.png"
    if shutil.which("dot") is None:
        with pytest.raises(ConfnetError, match="needs Graphviz's 'dot' program"):
            draw.draw_net_to_file(net(), str(png))
        assert not png.exists()
    else:
        draw.draw_net_to_file(net(), str(png))
        assert png.read_bytes().startswith(b"\x89PNG")
