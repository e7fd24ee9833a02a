import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import make_layer


def test_input_shapes_each_top():
    layer = make_layer('type: "Input" top: "data" top: "label" '
                       'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } }')
    top = [Blob(), Blob()]
    layer.setup([], top)
    assert [t.shape for t in top] == [(2, 3), (2,)]
    top[0].data[...] = 7
    layer.forward([], top)
    assert np.all(top[0].data == 7)


def test_input_one_shape_for_all_tops():
    layer = make_layer('type: "Input" top: "a" top: "b" input_param { shape { dim: 4 dim: 1 } }')
    top = [Blob(), Blob()]
    layer.setup([], top)
    assert top[0].shape == top[1].shape == (4, 1)


def test_input_shape_count_mismatch():
    layer = make_layer('type: "Input" top: "a" top: "b" top: "c" '
                       'input_param { shape { dim: 1 } shape { dim: 2 } }')
    with pytest.raises(ConfnetError, match="one shape, or one per top"):
        layer.setup([], [Blob(), Blob(), Blob()])
