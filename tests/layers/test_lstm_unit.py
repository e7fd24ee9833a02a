import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_blobs, make_layer

N, D = 2, 3


def expected_unit(c_prev, x, cont):
    """Element by element: the gates i, f, o, g sit in that order along the last axis of x."""
    c, h = np.zeros_like(c_prev), np.zeros_like(c_prev)
    for n in range(c_prev.shape[1]):
        for d in range(c_prev.shape[2]):
            i, f, o, g = (x[0, n, k * D + d] for k in range(4))
            i, f, o, g = 1 / (1 + np.exp(-i)), 1 / (1 + np.exp(-f)), 1 / (1 + np.exp(-o)), np.tanh(g)
            c[0, n, d] = cont[0, n] * f * c_prev[0, n, d] + i * g
            h[0, n, d] = o * np.tanh(c[0, n, d])
    return [c, h]


@pytest.mark.parametrize("cont", [[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 1.0]]])
def test_forward_and_gradients(cont):
    """A 0 in cont forgets c_prev; a fraction scales it (the gradient is the exact one)."""
    c_prev, x, cont = RNG.normal(size=(1, N, D)), RNG.normal(size=(1, N, 4 * D)), np.array(cont)
    check_layer('type: "LSTMUnit"', [c_prev, x, cont], expected_unit(c_prev, x, cont),
                no_grad=(2,))


def test_reset_stream_ignores_c_prev():
    c_prev, x = RNG.normal(size=(1, N, D)), RNG.normal(size=(1, N, 4 * D))
    _, _, top = check_layer('type: "LSTMUnit"', [c_prev, x, np.array([[1.0, 0.0]])],
                            num_top=2, check_grad=False)
    _, _, top_zero = check_layer('type: "LSTMUnit"', [0 * c_prev, x, np.array([[1.0, 0.0]])],
                                 num_top=2, check_grad=False)
    np.testing.assert_array_equal(top[0].data[0, 1], top_zero[0].data[0, 1])
    assert not np.allclose(top[0].data[0, 0], top_zero[0].data[0, 0])


def test_no_gradient_to_cont():
    layer, bottom, top = check_layer('type: "LSTMUnit"', [np.zeros((1, N, D)),
                                     np.zeros((1, N, 4 * D)), np.ones((1, N))], num_top=2,
                                     check_grad=False)
    assert not layer.allow_force_backward(2) and layer.allow_force_backward(1)
    with pytest.raises(ConfnetError, match="sequence continuation indicators"):
        layer.backward(top, [True, True, True], bottom)


@pytest.mark.parametrize("shapes, message", [
    ([(N, D), (1, N, 4 * D), (1, N)], r"c_prev\) must have shape \(1, N, D\)"),
    ([(1, N, D), (1, N, 3 * D), (1, N)], r"must have shape \(1, 2, 12\)"),
    ([(1, N, D), (1, N, 4 * D), (N,)], r"cont\) must have shape \(1, 2\)"),
])
def test_shape_errors(shapes, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer('type: "LSTMUnit"').setup(make_blobs([np.zeros(s) for s in shapes]),
                                             make_blobs([0, 0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("no_grad", [(2,), (0, 2), (1, 2)])
def test_gpu(device, no_grad):
    streams, dim = 7, 5
    cont = np.array([[1, 0, 0.5, 1, 1, 0, 1]], dtype=float)
    bottoms = [RNG.normal(size=(1, streams, dim)), 2 * RNG.normal(size=(1, streams, 4 * dim)),
               cont]
    check_layer_gpu('type: "LSTMUnit"', bottoms, device=device, num_top=2, no_grad=no_grad)
