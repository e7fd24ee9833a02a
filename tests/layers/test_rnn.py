import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import RNG, check_layer, layer_text, make_blobs, make_layer, run_forward

T, N, H = 3, 2, 3
# Stream 1 starts a new sequence at t = 2: its state must be reset there.
CONT = np.array([[0, 0], [1, 1], [1, 0]], dtype=float)
# With a given initial state, the first step continues it.
CONT_EXPOSED = np.array([[1, 1], [1, 0], [1, 1]], dtype=float)


def rnn_text(num_output=H, **settings):
    return layer_text("RNN", "recurrent_param", num_output=num_output, **settings)


def expected_rnn(x, cont, w_xh, b_h, w_hh, w_ho, b_o, x_static=None, w_static=None, h0=None):
    """One time step and one stream at a time; returns o (T, N, H) and h_T (1, N, H)."""
    steps, streams = cont.shape
    h = np.zeros((streams, w_hh.shape[0])) if h0 is None else h0[0].copy()
    out = np.zeros((steps, streams, w_ho.shape[0]))
    for t in range(steps):
        for n in range(streams):
            z = w_hh @ (cont[t, n] * h[n]) + w_xh @ x[t, n].ravel() + b_h
            if x_static is not None:
                z += w_static @ x_static[n].ravel()
            h[n] = np.tanh(z)
            out[t, n] = np.tanh(w_ho @ h[n] + b_o)
    return out, h[None]


def weights(inputs, static=None):
    """W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o: Caffe's blob order."""
    shapes = ([(H, inputs), (H,)] + ([(H, static)] if static else [])
              + [(H, H), (H, H), (H,)])
    return [0.7 * RNG.normal(size=s) for s in shapes]


def test_forward_and_gradients_with_reset_in_the_middle():
    x = RNG.normal(size=(T, N, 3))
    params = weights(3)
    want, _ = expected_rnn(x, CONT, *params)
    layer, _, _ = check_layer(rnn_text(), [x, CONT], [want], params=params, no_grad=(1,))
    assert [blob.shape for blob in layer.blobs] == [(3, 3), (3,), (3, 3), (3, 3), (3,)]


def test_features_flattened_and_static_input():
    x, xs = RNG.normal(size=(T, N, 2, 2)), RNG.normal(size=(N, 2, 2))
    w_xh, b_h, w_s, w_hh, w_ho, b_o = params = weights(4, static=4)
    want, _ = expected_rnn(x, CONT, w_xh, b_h, w_hh, w_ho, b_o, xs, w_s)
    layer, _, _ = check_layer(rnn_text(), [x, CONT, xs], [want], params=params, no_grad=(1,))
    assert [blob.shape for blob in layer.blobs] == [(3, 4), (3,), (3, 4), (3, 3), (3, 3), (3,)]


def test_expose_hidden_with_static_input():
    x, xs, h0 = RNG.normal(size=(T, N, 2)), RNG.normal(size=(N, 3)), RNG.normal(size=(1, N, H))
    w_xh, b_h, w_s, w_hh, w_ho, b_o = params = weights(2, static=3)
    want = expected_rnn(x, CONT_EXPOSED, w_xh, b_h, w_hh, w_ho, b_o, xs, w_s, h0)
    check_layer(rnn_text(expose_hidden="true"), [x, CONT_EXPOSED, xs, h0], list(want),
                params=params, no_grad=(1,))


def test_expose_hidden():
    x, h0 = RNG.normal(size=(T, N, 2)), RNG.normal(size=(1, N, H))
    params = weights(2)
    want = expected_rnn(x, CONT_EXPOSED, *params, h0=h0)
    check_layer(rnn_text(expose_hidden="true"), [x, CONT_EXPOSED, h0], list(want),
                params=params, no_grad=(1,))


def test_state_carried_to_the_next_batch():
    """Without expose_hidden the final state of one forward starts the next (Caffe)."""
    x1, x2 = RNG.normal(size=(T, N, 2)), RNG.normal(size=(T, N, 2))
    params = weights(2)
    layer, bottom, top = check_layer(rnn_text(), [x1, CONT_EXPOSED], params=params,
                                     check_grad=False)
    first, h_T = expected_rnn(x1, CONT_EXPOSED, *params)
    np.testing.assert_allclose(top[0].data, first, rtol=1e-10)
    bottom[0].data[...] = x2
    run_forward(layer, bottom, top)
    second, _ = expected_rnn(x2, CONT_EXPOSED, *params, h0=h_T)
    np.testing.assert_allclose(top[0].data, second, rtol=1e-10)


def test_errors():
    with pytest.raises(ConfnetError, match="num_output must be set"):
        make_layer('type: "RNN"').setup(make_blobs([np.zeros((T, N, 2)), np.zeros((T, N))]),
                                        make_blobs([0]))
    with pytest.raises(ConfnetError, match="needs tops: the output, h_T; got 1"):
        make_layer(rnn_text(expose_hidden="true")).setup(
            make_blobs([np.zeros((T, N, 2)), np.zeros((T, N)), np.zeros((1, N, H))]),
            make_blobs([0]))
    with pytest.raises(ConfnetError, match="needs 2 to 4 bottom"):
        make_layer(rnn_text()).setup(make_blobs([np.zeros((T, N, 2))] * 5), make_blobs([0]))
