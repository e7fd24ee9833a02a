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
"""

import numpy as np
from google.protobuf import text_format

from confnet import rng
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
