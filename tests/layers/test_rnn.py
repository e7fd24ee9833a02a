import contextlib
import logging

import numpy as np
import pytest

from confnet import rng
from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    device_backend,
    layer_text,
    make_blobs,
    make_layer,
    run_forward,
    running_on,
)

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


# Device checks: odd sizes (T 4, N 3, H 5), cont with a reset and a fraction (cont multiplies the
# state, on both sides), filled weights large enough to leave tanh's linear range.
GPU_CONT = np.array([[0, 0, 1], [1, 0.5, 1], [1, 1, 0], [0, 1, 1]], dtype=float)
# Gradients through time add up T*N float32 products of O(1) terms, in another order on the
# device: an absolute error of a few 1e-6 where they cancel.
GRAD_ATOL = 1e-5
FILLERS = dict(weight_filler='{ type: "gaussian" std: 0.6 }',
               bias_filler='{ type: "uniform" min: -0.5 max: 0.5 }')


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("static, expose", [(False, False), (True, True), (False, True)])
def test_gpu(device, static, expose):
    steps, streams = GPU_CONT.shape
    bottoms = [RNG.normal(size=(steps, streams, 2, 3)), GPU_CONT]
    bottoms += [RNG.normal(size=(streams, 7))] if static else []
    bottoms += [RNG.normal(size=(1, streams, 5))] if expose else []
    check_layer_gpu(rnn_text(5, expose_hidden=str(expose).lower(), **FILLERS), bottoms,
                    device=device, num_top=1 + expose, no_grad=(1,), atol=GRAD_ATOL)


def check_state_carried_gpu(text, features, device):
    """Batches run on the device, then the host, then the device again (then with fewer
    streams: zero states) give the outputs of a host-only run: the carried state is a layer blob
    that follows the layer between the two sides."""
    device_backend(device)
    steps, streams = GPU_CONT.shape
    batches = [(RNG.normal(size=(steps, streams, features)), GPU_CONT) for _ in range(3)]
    batches.append((batches[0][0][:, :2], GPU_CONT[:, :2]))
    runs = []
    for sides in ([None] * 4, [device, None, device, device]):
        rng.seed(0)
        layer = make_layer(text, dtype=np.float32)
        outputs = []
        for i, (side, arrays) in enumerate(zip(sides, batches)):
            bottom, top = make_blobs(arrays, np.float32), make_blobs([0.0], np.float32)
            with running_on(side) if side is not None else contextlib.nullcontext():
                if i == 0:
                    layer.setup(bottom, top)
                run_forward(layer, bottom, top)
                outputs.append(top[0].cpu_data.copy())
        runs.append(outputs)
    for i, (want, got) in enumerate(zip(*runs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"batch {i}")


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_state_carried_to_the_next_batch(device):
    check_state_carried_gpu(rnn_text(5, **FILLERS), 3, device)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_debug_info(device, caplog):
    """debug_info logs the same means on the device (copying them to the host, as asked)."""
    device_backend(device)
    caplog.set_level(logging.INFO, logger="confnet")
    bottoms = [RNG.normal(size=(4, 3, 2)), GPU_CONT]
    logs = []
    for side in (None, device):
        layer = make_layer(rnn_text(5, debug_info="true", **FILLERS), dtype=np.float32)
        bottom, top = make_blobs(bottoms, np.float32), make_blobs([0.0], np.float32)
        caplog.clear()
        with running_on(side) if side is not None else contextlib.nullcontext():
            rng.seed(0)
            layer.setup(bottom, top)
            run_forward(layer, bottom, top)
            top[0].set_diff(1.0)
            layer.backward(top, [True, False], bottom)
        logs.append([r.getMessage() for r in caplog.records if "Layer" in r.getMessage()])
    assert len(logs[0]) == len(logs[1]) == 7   # the top; bottom 0 and the five parameters
    for want, got in zip(*logs):
        assert got.split(":")[0] == want.split(":")[0]
        assert float(got.split(":")[1]) == pytest.approx(float(want.split(":")[1]), rel=1e-4)
