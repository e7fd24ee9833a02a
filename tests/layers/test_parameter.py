import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import RNG, check_layer, make_blobs, make_layer

TEXT = 'type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }'


def test_top_is_the_learnable_blob():
    p = RNG.normal(size=(2, 3))
    layer, _, top = check_layer(TEXT, [], [p], params=[p])
    assert [blob.shape for blob in layer.blobs] == [(2, 3)]
    assert np.shares_memory(top[0].data, layer.blobs[0].data)


def test_starts_at_zero_and_accumulates_gradients():
    layer, _, top = check_layer(TEXT, [], [np.zeros((2, 3))], check_grad=False)
    top[0].diff[...] = 1.5
    layer.blobs[0].diff[...] = 1.0
    layer.backward(top, [], [])
    layer.backward(top, [], [])
    np.testing.assert_array_equal(layer.blobs[0].diff, np.full((2, 3), 4.0))


def test_no_shape_is_a_scalar():
    layer, _, top = check_layer('type: "Parameter"', [], [np.float64(0)], check_grad=False)
    assert top[0].shape == () and layer.blobs[0].shape == ()


def test_takes_no_bottom():
    with pytest.raises(ConfnetError, match="bottom"):
        make_layer(TEXT).setup(make_blobs([np.zeros(2)]), make_blobs([0.0]))
