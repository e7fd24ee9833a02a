"""DummyData layer: tops shaped by the parameters and filled by fillers."""

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, make_layer, run_forward, running_on
from tests.layers.test_memory_data import check_data_gpu


def dummy_layer(param, tops=2, dtype=np.float64):
    layer = make_layer('type: "DummyData" ' + " ".join(f'top: "t{i}"' for i in range(tops))
                       + f" dummy_data_param {{ {param} }}", dtype=dtype)
    top = [Blob((), dtype) for _ in range(tops)]
    layer.setup([], top)
    return layer, top


def test_constant_tops_are_filled_once_and_random_ones_every_forward():
    layer, top = dummy_layer('data_filler { type: "constant" value: 3 } '
                             'data_filler { type: "uniform" min: 5 max: 6 } '
                             'shape { dim: 2 dim: 3 } shape { dim: 4 }')
    assert [t.shape for t in top] == [(2, 3), (4,)]
    np.testing.assert_array_equal(top[0].data, np.full((2, 3), 3.0))
    top[0].data[0, 0] = -1                      # as Caffe, a constant top is not filled again
    run_forward(layer, [], top, seed=1)
    first = top[1].data.copy()
    run_forward(layer, [], top, seed=2)
    assert top[0].data[0, 0] == -1
    assert ((first >= 5) & (first < 6)).all() and not np.array_equal(first, top[1].data)


def test_one_filler_for_all_tops_and_legacy_dims():
    layer, top = dummy_layer('data_filler { type: "gaussian" std: 0.1 } num: 2 channels: 3 '
                             'channels: 1 height: 4 width: 5')
    assert [t.shape for t in top] == [(2, 3, 4, 5), (2, 1, 4, 5)]
    run_forward(layer, [], top)
    assert all(0 < t.data.std() < 0.2 for t in top)


def test_no_filler_gives_zeros():
    _, top = dummy_layer("shape { dim: 3 }", tops=1)
    np.testing.assert_array_equal(top[0].data, np.zeros(3))


@pytest.mark.parametrize("param, message", [
    ("shape { dim: 1 } shape { dim: 1 } shape { dim: 1 }", "'shape' once, or once per top"),
    ("num: 1 channels: 1 height: 1", "'width' once, or once per top"),
    ("num: 1 channels: 1 height: 1 width: 1 shape { dim: 1 }", "not both"),
    ("data_filler {} data_filler {} data_filler {} shape { dim: 1 }", "0, 1 or 2"),
])
def test_inconsistent_parameters_are_refused(param, message):
    with pytest.raises(ConfnetError, match=message):
        dummy_layer(param)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu(device):
    """Random tops are drawn on the host and copied once per forward; the constant top was
    filled at setup and is copied once, when the device first reads it."""
    param = ('data_filler { type: "constant" value: 3 } data_filler { type: "gaussian" } '
             'data_filler { type: "uniform" } shape { dim: 2 dim: 3 } shape { dim: 5 } '
             'shape { dim: 1 dim: 7 }')
    built = []

    def build():
        built.append(dummy_layer(param, tops=3, dtype=np.float32))
        return built[-1]

    check_data_gpu(device, build, copies=2)
    _, top = built[-1]
    with running_on(device) as backend:
        backend.copies.reset()
        top[0].gpu_data
        top[0].gpu_data
        assert backend.copies.htod == 1
        np.testing.assert_array_equal(top[0].cpu_data, np.full((2, 3), 3.0))
