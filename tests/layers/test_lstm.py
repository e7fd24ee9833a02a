import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
    run_forward,
)
from tests.layers.test_rnn import FILLERS, GPU_CONT, GRAD_ATOL, check_state_carried_gpu

T, N, H = 3, 2, 3
# Stream 0 starts a new sequence at t = 2: its state must be reset there.
CONT = np.array([[0, 0], [1, 1], [0, 1]], dtype=float)
# With given initial states, the first step continues them.
CONT_EXPOSED = np.array([[1, 1], [0, 1], [1, 1]], dtype=float)


def lstm_text(num_output=H, **settings):
    return layer_text("LSTM", "recurrent_param", num_output=num_output, **settings)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def expected_lstm(x, cont, w_x, b, w_h, x_static=None, w_static=None, h0=None, c0=None):
    """One time step and one stream at a time; returns h (T, N, H), h_T and c_T (1, N, H)."""
    steps, streams = cont.shape
    hid = w_h.shape[1]
    h = np.zeros((streams, hid)) if h0 is None else h0[0].copy()
    c = np.zeros((streams, hid)) if c0 is None else c0[0].copy()
    out = np.zeros((steps, streams, hid))
    for t in range(steps):
        for n in range(streams):
            a = w_x @ x[t, n].ravel() + b + w_h @ (cont[t, n] * h[n])
            if x_static is not None:
                a += w_static @ x_static[n].ravel()
            i, f, o = sigmoid(a[:hid]), sigmoid(a[hid:2 * hid]), sigmoid(a[2 * hid:3 * hid])
            g = np.tanh(a[3 * hid:])
            c[n] = cont[t, n] * f * c[n] + i * g
            h[n] = o * np.tanh(c[n])
            out[t, n] = h[n]
    return out, h[None], c[None]


def weights(inputs, static=None):
    """W_xc, b_c, [W_xc_static], W_hc: Caffe's blob order."""
    shapes = [(4 * H, inputs), (4 * H,)] + ([(4 * H, static)] if static else []) + [(4 * H, H)]
    return [0.6 * RNG.normal(size=s) for s in shapes]


def test_forward_and_gradients_with_reset_in_the_middle():
    x = RNG.normal(size=(T, N, 4))
    w_x, b, w_h = params = weights(4)
    want, _, _ = expected_lstm(x, CONT, w_x, b, w_h)
    layer, _, _ = check_layer(lstm_text(), [x, CONT], [want], params=params, no_grad=(1,))
    assert [blob.shape for blob in layer.blobs] == [(12, 4), (12,), (12, 3)]


def test_features_flattened_and_static_input():
    x, xs = RNG.normal(size=(T, N, 2, 2)), RNG.normal(size=(N, 3, 2))
    w_x, b, w_s, w_h = params = weights(4, static=6)
    want, _, _ = expected_lstm(x, CONT, w_x, b, w_h, xs, w_s)
    layer, _, _ = check_layer(lstm_text(), [x, CONT, xs], [want], params=params, no_grad=(1,))
    assert [blob.shape for blob in layer.blobs] == [(12, 4), (12,), (12, 6), (12, 3)]


def test_expose_hidden_initial_and_final_states():
    x = RNG.normal(size=(T, N, 3))
    h0, c0 = RNG.normal(size=(1, N, H)), RNG.normal(size=(1, N, H))
    w_x, b, w_h = params = weights(3)
    want = expected_lstm(x, CONT_EXPOSED, w_x, b, w_h, h0=h0, c0=c0)
    check_layer(lstm_text(expose_hidden="true"), [x, CONT_EXPOSED, h0, c0], list(want),
                params=params, no_grad=(1,))


def test_expose_hidden_with_static_input():
    x, xs = RNG.normal(size=(T, N, 2)), RNG.normal(size=(N, 3))
    h0, c0 = RNG.normal(size=(1, N, H)), RNG.normal(size=(1, N, H))
    w_x, b, w_s, w_h = params = weights(2, static=3)
    want = expected_lstm(x, CONT_EXPOSED, w_x, b, w_h, xs, w_s, h0, c0)
    check_layer(lstm_text(expose_hidden="true"), [x, CONT_EXPOSED, xs, h0, c0], list(want),
                params=params, no_grad=(1,))


def test_state_carried_to_the_next_batch():
    """Without expose_hidden the final state of one forward starts the next (Caffe)."""
    x1, x2 = RNG.normal(size=(T, N, 2)), RNG.normal(size=(T, N, 2))
    w_x, b, w_h = params = weights(2)
    layer = make_layer(lstm_text())
    bottom, top = make_blobs([x1, CONT_EXPOSED]), make_blobs([0])
    layer.setup(bottom, top)
    for blob, value in zip(layer.blobs, params):
        blob.data[...] = value
    run_forward(layer, bottom, top)
    first, h_T, c_T = expected_lstm(x1, CONT_EXPOSED, w_x, b, w_h)
    np.testing.assert_allclose(top[0].data, first, rtol=1e-10)
    bottom[0].data[...] = x2
    run_forward(layer, bottom, top)
    second, _, _ = expected_lstm(x2, CONT_EXPOSED, w_x, b, w_h, h0=h_T, c0=c_T)
    np.testing.assert_allclose(top[0].data, second, rtol=1e-10)
    # A new batch size starts from zero states.
    bottom = make_blobs([x1[:, :1], CONT_EXPOSED[:, :1]])
    run_forward(layer, bottom, top)
    np.testing.assert_allclose(top[0].data, first[:, :1], rtol=1e-10)


def test_fillers_and_no_gradient_to_cont():
    text = lstm_text(2, weight_filler='{ type: "uniform" min: -0.1 max: 0.1 }',
                     bias_filler='{ type: "constant" value: 0.5 }')
    layer, bottom, top = check_layer(text, [RNG.normal(size=(T, N, 5)), CONT], check_grad=False)
    assert [blob.shape for blob in layer.blobs] == [(8, 5), (8,), (8, 2)]
    assert np.all(layer.blobs[1].data == 0.5)
    assert 0 < np.abs(layer.blobs[0].data).max() <= 0.1
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)
    bottom[1].diff[...] = 7
    top[0].diff[...] = 1
    layer.backward(top, [True, True], bottom)
    assert np.all(bottom[1].diff == 0)


def test_float32_stays_float32():
    layer = make_layer(lstm_text(expose_hidden="true"), dtype=np.float32)
    arrays = [RNG.normal(size=(T, N, 2)), CONT_EXPOSED, np.zeros((1, N, H)), np.zeros((1, N, H))]
    bottom, top = make_blobs(arrays, np.float32), make_blobs([0, 0, 0], np.float32)
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    for blob in top:
        blob.diff[...] = 1
    layer.backward(top, [True, False, True, True], bottom)
    assert {b.dtype for b in top + bottom + layer.blobs} == {np.dtype(np.float32)}
    assert {b.diff.dtype for b in bottom + layer.blobs} == {np.dtype(np.float32)}


@pytest.mark.parametrize("text, arrays, n_top, message", [
    ('type: "LSTM" recurrent_param { }', [(T, N, 2), (T, N)], 1, "num_output must be set"),
    (lstm_text(), [(T, N), (T, N)], 1, r"bottom\[0\] must have shape \(T, N, features"),
    (lstm_text(), [(T, N, 2), (T, N + 1)], 1, r"cont\) must have shape \(3, 2\)"),
    (lstm_text(), [(T, N, 2), (T, N), (N + 1, 2)], 1, r"x_static\) must have shape \(2, \.\.\.\)"),
    (lstm_text(), [(T, N, 2), (T, N), (N, 2), (N, 2)], 1, r"needs bottoms x, cont, \[x_static\]"),
    (lstm_text(expose_hidden="true"), [(T, N, 2), (T, N), (1, N, H)], 1, "h_0, c_0; got 3"),
    (lstm_text(expose_hidden="true"), [(T, N, 2), (T, N), (1, N, H), (1, N, H)], 1,
     "needs tops: the output, h_T, c_T; got 1"),
    (lstm_text(expose_hidden="true"), [(T, N, 2), (T, N), (1, N, H), (1, N, 2)], 3,
     r"\(c_0\) must have shape \(1, 2, 3\)"),
])
def test_errors(text, arrays, n_top, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(text).setup(make_blobs([np.zeros(s) for s in arrays]), make_blobs([0] * n_top))


def test_reshape_keeps_steps_and_features():
    layer, top = make_layer(lstm_text()), make_blobs([0])
    layer.setup(make_blobs([np.zeros((T, N, 2)), np.zeros((T, N))]), top)
    with pytest.raises(ConfnetError, match="number of time steps is fixed"):
        layer.reshape(make_blobs([np.zeros((T + 1, N, 2)), np.zeros((T + 1, N))]), top)
    with pytest.raises(ConfnetError, match="made for 2"):
        layer.reshape(make_blobs([np.zeros((T, N, 3)), np.zeros((T, N))]), top)
    layer.reshape(make_blobs([np.zeros((T, 5, 2)), np.zeros((T, 5))]), top)
    assert top[0].shape == (T, 5, H)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("static, expose", [(False, False), (True, True), (False, True)])
def test_gpu(device, static, expose):
    steps, streams = GPU_CONT.shape
    bottoms = [RNG.normal(size=(steps, streams, 2, 3)), GPU_CONT]
    bottoms += [RNG.normal(size=(streams, 7))] if static else []
    bottoms += [RNG.normal(size=(1, streams, 5)) for _ in range(2)] if expose else []
    check_layer_gpu(lstm_text(5, expose_hidden=str(expose).lower(), **FILLERS), bottoms,
                    device=device, num_top=1 + 2 * expose, no_grad=(1,), atol=GRAD_ATOL)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_state_carried_to_the_next_batch(device):
    check_state_carried_gpu(lstm_text(5, **FILLERS), 3, device)
