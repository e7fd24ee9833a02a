"""confnet time: random inputs with valid labels, per-layer statistics, the table, the command."""

import itertools

import numpy as np
import pytest
from click.testing import CliRunner

from confnet import timing
from confnet.cli import main
from confnet.layers import TRAIN
from confnet.net import Net
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from tests.layers.harness import DEVICES, device_backend, running_on

NET = """name: "timed"
layer { name: "in" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 8 dim: 3 dim: 6 dim: 6 } shape { dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 7 weight_filler { type: "xavier" } } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def build():
    return Net(io.parse_text(NET, pb.NetParameter), TRAIN)


def test_inputs_get_random_data_and_valid_labels():
    net = build()
    timing.fill_inputs(net)
    labels = net.blobs["label"].data
    assert np.array_equal(labels, labels.round()) and labels.min() >= 0 and labels.max() < 7
    assert net.blobs["data"].data.std() > 0.5


def test_statistics_and_table_with_a_fake_clock():
    ticks = itertools.count()
    result = timing.time_net(build(), iterations=3, clock=lambda: next(ticks) * 1e-3)
    by_name = {t.name: t for t in result.layers}
    assert list(by_name) == ["in", "label_in_1_split", "conv", "relu", "fc", "fc_fc_0_split",
                             "acc", "loss"]
    assert by_name["conv"].forward == pytest.approx([1e-3] * 3)
    assert by_name["conv"].backward == pytest.approx([1e-3] * 3)
    assert by_name["acc"].backward == []          # no gradient flows through accuracy
    assert by_name["conv"].top_shapes == [(8, 4, 4, 4)]
    assert by_name["conv"].memory == (8 * 4 * 4 * 4 + 4 * 3 * 3 * 3 + 4) * 4
    lines = timing.table(result)
    assert lines[0].split() == ["layer", "type", "forward", "ms", "backward", "ms", "share",
                                "top", "shape", "memory"]
    conv = next(line for line in lines if line.startswith("conv "))
    assert conv.split()[2:5] == ["1.000", "1.000", f"{200 / 13:.1f}%"]
    assert len({len(line) for line in lines[:3]}) == 1       # aligned columns
    totals = lines[1 + len(result.layers)]
    assert "forward 8.000 ms, backward 5.000 ms, forward+backward 13.000 ms" in totals
    assert lines[-2].startswith("memory: ") and lines[-1].startswith("host peak: ")


def test_format_bytes():
    assert [timing.format_bytes(n) for n in (12, 2048, 3 * 2 ** 20)] == ["12 B", "2.0 KB",
                                                                         "3.0 MB"]


def test_time_command(tmp_path, tiny_lmdb):
    model = tmp_path / "net.prototxt"
    model.write_text(NET)
    result = CliRunner().invoke(main, ["time", "--model", str(model), "--iterations", "2"])
    assert result.exit_code == 0, result.output
    assert "per iteration (median of 2)" in result.output
    data_net = tmp_path / "data.prototxt"
    data_net.write_text(NET.replace(
        """layer { name: "in" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 8 dim: 3 dim: 6 dim: 6 } shape { dim: 8 } } }""",
        f"""layer {{ name: "d" type: "Data" top: "data" top: "label"
        data_param {{ source: "{tiny_lmdb}" batch_size: 4 }} }}"""))
    result = CliRunner().invoke(main, ["time", "--model", str(data_net), "--iterations", "2",
                                       "--mean"])
    assert result.exit_code == 0, result.output
    assert "per iteration (mean of 2)" in result.output and "4x1x8x8, 4" in result.output


def test_table_fits_80_columns_and_progress_is_reported():
    net = Net(io.parse_text(WIDE_NAMES, pb.NetParameter))
    seen = []
    timing_ = timing.time_net(net, 3, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    lines = timing.table(timing_)
    rows = lines[:1 + len(timing_.layers)]     # the header and the layers' rows
    assert all(len(line) <= 80 for line in rows), "\n".join(lines)
    assert any("~" in line for line in lines)


WIDE_NAMES = """
layer { name: "input_of_a_rather_long_and_descriptive_name" type: "Input" top: "x"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }
layer { name: "a_convolution_whose_name_goes_on_and_on_and_on" type: "Convolution"
        bottom: "x" top: "y" convolution_param { num_output: 2 kernel_size: 1 } }
"""


@pytest.fixture(params=DEVICES)
def device(request):
    device_backend(request.param)
    with running_on(request.param) as backend:
        yield backend


def test_device_timing_uses_events_and_the_allocator(device, monkeypatch):
    """On a device: every step is bracketed by two events and the host never synchronizes;
    the memory column is what the allocator gave each layer in the warm-up pass."""
    def no_sync():
        raise AssertionError("time_net synchronized the device inside a pass")
    monkeypatch.setattr(device, "synchronize", no_sync)
    marks = []
    record = device.record_event
    monkeypatch.setattr(device, "record_event", lambda: marks.append(1) or record())
    net = build()
    result = timing.time_net(net, iterations=2)
    backward_layers = sum(net.layer_need_backward)
    assert len(marks) == 3 * 2 * (len(net.layers) + backward_layers)
    by_name = {t.name: t for t in result.layers}
    assert all(s > 0 for s in by_name["conv"].forward + by_name["conv"].backward)
    # conv's top data and diff (8x4x4x4), its weights and bias with their diffs, and the
    # im2col buffer at least, each rounded up by the pool to 256 bytes.
    assert by_name["conv"].memory >= 2 * (8 * 4 * 4 * 4 + 4 * 3 * 3 * 3 + 4) * 4
    assert by_name["relu"].memory == 0             # in place: conv's blob
    assert by_name["in"].memory >= 256 * 2         # its two tops, filled in the warm-up
    pool = device.pool
    assert result.device_memory == {"in_use": pool.in_use, "peak": pool.peak, "held": pool.held}
    assert sum(t.memory for t in result.layers) <= pool.in_use <= pool.peak
    assert "device memory (allocator)" in timing.table(result)[-1]


def test_time_command_on_the_emulator(tmp_path):
    device_backend("emu")
    model = tmp_path / "net.prototxt"
    model.write_text(NET)
    try:
        result = CliRunner().invoke(main, ["time", "--model", str(model), "--iterations", "2",
                                           "--gpu", "emu"])
    finally:
        from confnet import gpu
        gpu.use(None)
    assert result.exit_code == 0, result.output
    assert "per iteration (median of 2)" in result.output
    assert "device memory (allocator)" in result.output
