import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    device_backend,
    make_blobs,
    make_layer,
    running_on,
)

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


@pytest.mark.parametrize("device", DEVICES)
def test_gpu(device):
    check_layer_gpu('type: "Parameter" parameter_param { shape { dim: 3 dim: 5 dim: 7 } }', [],
                    device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_device_accumulates_gradients(device):
    device_backend(device)
    with running_on(device) as backend:
        layer = make_layer(TEXT, dtype=np.float32)
        top = make_blobs([0.0], np.float32)
        layer.setup([], top)
        layer.blobs[0].set_data(RNG.normal(size=(2, 3)).astype(np.float32))
        layer.blobs[0].set_diff(1.0)
        backend.copies.reset()
        layer.forward([], top)
        top[0].set_diff(1.5)
        layer.backward(top, [], [])
        layer.backward(top, [], [])
        assert backend.copies.dtoh == 0
        np.testing.assert_array_equal(top[0].cpu_data, layer.blobs[0].cpu_data)
        np.testing.assert_array_equal(layer.blobs[0].cpu_diff, np.full((2, 3), 4.0))
