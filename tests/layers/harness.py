"""The shared layer check: build a layer from prototxt text, compare its forward with an
independent numpy expectation, and check its backward against central differences in float64.

A layer test is a few lines (``check_in_place`` also compares in-place and out-of-place runs):

    def test_relu():
        x = away_from(RNG.normal(size=(2, 3, 4, 5)), [0.0])
        check_layer('type: "ReLU"', [x], [np.maximum(x, 0)])

The gradient check uses the objective  L = sum_t sum(top_t * R_t)  with fixed random R_t, so
dL/dtop_t = R_t; it compares the analytic gradient of every bottom (except those listed in
``no_grad``) and every parameter blob with (L(x + h) - L(x - h)) / 2h on a sample of elements.
The global RNG is re-seeded before every forward, so random layers (Dropout) draw the same
numbers each time.

``check_layer_gpu`` adds the device: the layer's GPU path against its CPU path in float32, on the
CUDA emulator in its three thread orders, and on a real GPU for ``device=0`` (``DEVICES``
parametrizes a test over both; the GPU case carries the ``gpu`` marker and skips without one):

    @pytest.mark.parametrize("device", DEVICES)
    def test_relu_gpu(device):
        check_layer_gpu('type: "ReLU"', [RNG.normal(size=(3, 5, 7))], device=device)
"""

import contextlib
import functools
import os
import shutil

import numpy as np
import pytest
from google.protobuf import text_format

from confnet import rng, threads
from confnet.blob import Blob
from confnet.layers import TRAIN, create_layer
from confnet.proto import confnet_pb2 as pb

RNG = np.random.default_rng(1234)


def away_from(x, points, margin=0.02):
    """Move values within ``margin`` of any of ``points`` out to that distance (avoid kinks)."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin)
    return x


def make_layer(text, phase=TRAIN, dtype=np.float64, name="layer"):
    param = text_format.Parse(text, pb.LayerParameter())
    if not param.name:
        param.name = name
    return create_layer(param, phase, dtype)


def make_blobs(arrays, dtype=np.float64):
    blobs = []
    for i, a in enumerate(arrays):
        blob = Blob(np.shape(a), dtype, f"b{i}")
        blob.data[...] = a
        blobs.append(blob)
    return blobs


def run_forward(layer, bottom, top, seed=0):
    rng.seed(seed)
    layer.reshape(bottom, top)
    return layer.forward(bottom, top)


def check_layer(text, bottoms, expected=None, *, phase=TRAIN, num_top=None, no_grad=(),
                check_grad=True, rtol=1e-6, atol=1e-8, grad_rtol=1e-4, grad_atol=1e-6,
                step=1e-5, samples=60, seed=0, params=None):
    """Set up the layer on float64 ``bottoms``; compare tops with ``expected`` (a list of arrays,
    or None to skip); then run the gradient check. ``params`` optionally overwrites the
    parameter blobs after setup. Returns (layer, bottom blobs, top blobs)."""
    layer = make_layer(text, phase)
    bottom = make_blobs(bottoms)
    n_top = num_top if num_top is not None else (len(expected) if expected is not None else 1)
    top = [Blob((), np.float64, f"t{i}") for i in range(n_top)]
    rng.seed(seed)
    layer.setup(bottom, top)
    for blob, value in zip(layer.blobs, params or []):
        blob.data[...] = value
    run_forward(layer, bottom, top, seed)
    if expected is not None:
        assert len(expected) == len(top)
        for i, (blob, want) in enumerate(zip(top, expected)):
            want = np.asarray(want, dtype=np.float64)
            assert blob.shape == want.shape, f"top {i}: shape {blob.shape}, expected {want.shape}"
            np.testing.assert_allclose(blob.data, want, rtol=rtol, atol=atol,
                                       err_msg=f"top {i} forward")
    if check_grad:
        gradient_check(layer, bottom, top, no_grad=no_grad, rtol=grad_rtol, atol=grad_atol,
                       step=step, samples=samples, seed=seed)
    return layer, bottom, top


def _objective(layer, bottom, top, weights, seed):
    run_forward(layer, bottom, top, seed)
    return sum(float(np.sum(t.data * w)) for t, w in zip(top, weights))


def gradient_check(layer, bottom, top, *, no_grad=(), rtol=1e-4, atol=1e-6, step=1e-5,
                   samples=60, seed=0):
    checker = np.random.default_rng(seed + 1)
    run_forward(layer, bottom, top, seed)
    weights = [checker.normal(size=t.shape) for t in top]
    for t, w in zip(top, weights):
        t.diff[...] = w
    for blob in layer.blobs:
        blob.diff[...] = 0
    propagate = [i not in no_grad for i in range(len(bottom))]
    layer.backward(top, propagate, bottom)
    targets = [(f"bottom {i}", b, b.diff.copy()) for i, b in enumerate(bottom) if propagate[i]]
    targets += [(f"param {i}", b, b.diff.copy()) for i, b in enumerate(layer.blobs)]
    assert targets, "nothing to check"
    for label, blob, analytic in targets:
        flat, grad = blob.data.reshape(-1), analytic.reshape(-1)
        picks = checker.choice(flat.size, min(samples, flat.size), replace=False)
        for k in picks:
            saved = flat[k]
            flat[k] = saved + step
            plus = _objective(layer, bottom, top, weights, seed)
            flat[k] = saved - step
            minus = _objective(layer, bottom, top, weights, seed)
            flat[k] = saved
            numeric = (plus - minus) / (2 * step)
            scale = max(abs(numeric), abs(grad[k]), 1.0)
            assert abs(numeric - grad[k]) <= atol + rtol * scale, (
                f"{label}, element {k}: analytic {grad[k]:.8g}, numeric {numeric:.8g}")


def check_in_place(text, bottoms, phase=TRAIN):
    """Run the layer out of place, then in place (top 0 is bottom 0), with the same upstream
    gradient and random draws: the top data and every bottom diff must agree."""
    dy = RNG.normal(size=np.shape(bottoms[0]))
    runs = []
    for in_place in (False, True):
        layer = make_layer(text, phase)
        bottom = make_blobs(bottoms)
        top = [bottom[0]] if in_place else [Blob((), np.float64)]
        rng.seed(0)
        layer.setup(bottom, top)
        run_forward(layer, bottom, top)
        y = top[0].data.copy()
        top[0].diff[...] = dy
        layer.backward(top, [True] * len(bottom), bottom)
        runs.append([y] + [b.diff.copy() for b in bottom])
    for i, (out, inp) in enumerate(zip(*runs)):
        np.testing.assert_allclose(inp, out, rtol=1e-12, atol=1e-12,
                                   err_msg="top data" if i == 0 else f"bottom {i - 1} diff")


def layer_text(layer_type, param_field, **settings):
    """Prototxt text of a layer: ``type`` and its parameter message from keyword settings,
    e.g. layer_text("Convolution", "convolution_param", num_output=4, kernel_size=3)."""
    fields = " ".join(f"{k}: {v}" for k, v in settings.items())
    return f'type: "{layer_type}" {param_field} {{ {fields} }}'


# -- the device dimension --------------------------------------------------------------------------
# A layer's GPU path is checked against its own CPU path in float32: the emulator runs it in each
# of its thread orders (a kernel that depends on the order of threads between barriers fails in
# one of them); the same check runs on a real GPU under the ``gpu`` marker.

DEVICES = ["emu", pytest.param(0, marks=pytest.mark.gpu, id="gpu0")]


def device_backend(device):
    """The backend for ``device`` ("emu" or a GPU id), or a pytest skip naming what is missing."""
    from confnet import gpu
    from confnet.errors import ConfnetError
    if device == "emu" and shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("the CUDA emulator needs g++ (or $CXX), which is not on PATH")
    try:
        return gpu.get(device)
    except (ConfnetError, ImportError, OSError) as e:
        pytest.skip(f"device {device!r} is not available: {e}")


@contextlib.contextmanager
def running_on(device, order=None):
    """Run on ``device`` (with emulator thread ``order``) inside the block, then on the CPU."""
    from confnet import gpu
    backend = gpu.use(device)
    saved = getattr(backend, "order", None)
    if order is not None:
        backend.order = order
    try:
        yield backend
    finally:
        gpu.use(None)
        if order is not None:
            backend.order = saved


def check_layer_gpu(text, bottoms, *, device="emu", phase=TRAIN, num_top=1, no_grad=(),
                    backward=True, in_place=False, rtol=1e-5, atol=1e-6, seed=0):
    """Run the layer on float32 ``bottoms`` on the CPU and on ``device`` (in every emulator
    thread order), from the same parameters and random draws, and compare the tops, the diffs
    of the bottoms not in ``no_grad`` and the parameter diffs. ``in_place``: top 0 is bottom 0.
    On the device, forward and backward must copy nothing back to the host.
    Returns the CPU run's results (a dict of name -> array)."""
    device_backend(device)
    run = functools.partial(_run_float32, text, bottoms, phase, num_top, no_grad, backward,
                            in_place, seed)
    want = run()
    for order in ("forward", "reverse", "random") if device == "emu" else (None,):
        with running_on(device, order) as backend:
            got = run(backend)
        assert got.keys() == want.keys()
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=rtol, atol=atol,
                                       err_msg=f"{name} on {backend.describe()}")
    return want


def _run_float32(text, bottoms, phase, num_top, no_grad, backward, in_place, seed, backend=None):
    """One forward (and backward, from fixed random top diffs) of a fresh float32 layer on
    ``backend`` (in use) or the CPU (None); the results as host arrays."""
    layer = make_layer(text, phase, np.float32)
    bottom = make_blobs(bottoms, np.float32)
    top = [bottom[0]] if in_place else []
    top += [Blob((), np.float32, f"t{i}") for i in range(len(top), num_top)]
    rng.seed(seed)
    layer.setup(bottom, top)
    for blob in layer.blobs:
        blob.zero_diff()
    if backend is not None:
        backend.copies.reset()
    run_forward(layer, bottom, top, seed)
    propagate = [backward and i not in no_grad for i in range(len(bottom))]
    if backward:
        checker = np.random.default_rng(seed + 1)
        for t in top:
            t.set_diff(checker.normal(size=t.shape).astype(np.float32))
        layer.backward(top, propagate, bottom)
    if backend is not None:
        assert backend.copies.dtoh == 0, (
            f"the device run copied back to the host: {backend.copies}")
    out = {f"top {i} data": t.cpu_data.copy() for i, t in enumerate(top)}
    out.update({f"bottom {i} diff": b.cpu_diff.copy()
                for i, b in enumerate(bottom) if propagate[i]})
    if backward:
        out.update({f"param {i} diff": b.cpu_diff.copy() for i, b in enumerate(layer.blobs)})
    return out


def split_every_loop(monkeypatch, workers=3):
    """Make confnet's host loops (threads.split) run as ``workers`` parts in parallel, however
    small the work: a layer's result must not depend on how its loops are shared out."""
    monkeypatch.setitem(threads._state, "count", workers)
    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
