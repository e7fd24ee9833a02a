"""DummyData layer: tops shaped by the parameters and filled by fillers."""

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import make_layer, run_forward


def dummy_layer(param, tops=2):
    layer = make_layer('type: "DummyData" ' + " ".join(f'top: "t{i}"' for i in range(tops))
                       + f" dummy_data_param {{ {param} }}")
    top = [Blob((), np.float64) for _ in range(tops)]
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
