import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.layers import TRAIN
from tests.layers.harness import (
    DEVICES,
    RNG,
    away_from,
    check_in_place,
    check_layer,
    check_layer_gpu,
    device_backend,
    make_blobs,
    make_layer,
    run_forward,
    running_on,
)

SHAPE = (2, 3, 4)


def inputs(n):
    return [RNG.normal(size=SHAPE) for _ in range(n)]


def test_sum():
    xs = inputs(2)
    check_layer('type: "Eltwise"', xs, [xs[0] + xs[1]])


def test_sum_with_coeffs():
    xs = inputs(3)
    text = 'type: "Eltwise" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }'
    check_layer(text, xs, [xs[0] - 0.5 * xs[1] + 2 * xs[2]])


@pytest.mark.parametrize("stable", ["true", "false"])
def test_prod(stable):
    xs = [away_from(x, [0.0], margin=0.1) for x in inputs(3)]
    text = f'type: "Eltwise" eltwise_param {{ operation: PROD stable_prod_grad: {stable} }}'
    check_layer(text, xs, [xs[0] * xs[1] * xs[2]])


def test_max():
    xs = inputs(3)
    check_layer('type: "Eltwise" eltwise_param { operation: MAX }', xs,
                [np.maximum(np.maximum(xs[0], xs[1]), xs[2])])


def test_max_ties_go_as_in_caffe():
    # Caffe compares x0 > x1 (a tie goes to x1), then x_i > best for i >= 2 (a tie keeps the best).
    x0, x1, x2 = np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    layer, bottom, top = check_layer('type: "Eltwise" eltwise_param { operation: MAX }',
                                     [x0, x1, x2], [[1.0, 1.0, 0.0]], check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True] * 3, bottom)
    np.testing.assert_array_equal([b.diff for b in bottom], [[0, 1, 0], [1, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize("op", ["SUM", "MAX"])
def test_in_place(op):
    check_in_place(f'type: "Eltwise" eltwise_param {{ operation: {op} }}', inputs(3))


@pytest.mark.parametrize("text, message", [
    ('eltwise_param { coeff: 1 coeff: 2 coeff: 3 }', "3 coeff values for 2 bottoms"),
    ('eltwise_param { operation: PROD coeff: 1 coeff: 2 }', "coeff is only for operation SUM"),
])
def test_bad_coeffs(text, message):
    layer = make_layer(f'type: "Eltwise" {text}', name="elt")
    with pytest.raises(ConfnetError, match=f"layer 'elt'.*{message}"):
        layer.setup([Blob(SHAPE), Blob(SHAPE)], [Blob()])


def test_shape_mismatch():
    with pytest.raises(ConfnetError, match="bottom\\[1\\] has shape"):
        make_layer('type: "Eltwise"').setup([Blob(SHAPE), Blob((2, 3))], [Blob()])


def test_prod_in_place_is_refused():
    a = Blob(SHAPE)
    with pytest.raises(ConfnetError, match="PROD cannot be computed in place"):
        make_layer('type: "Eltwise" eltwise_param { operation: PROD }').setup([a, Blob(SHAPE)],
                                                                               [a])


# -- device ----------------------------------------------------------------------------------------
GPU_SHAPE = (3, 5, 7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, n", [
    ("", 2), ("coeff: 0.5 coeff: -2 coeff: 3", 3), ("operation: PROD", 2),
    ("operation: PROD", 4), ("operation: PROD stable_prod_grad: false", 3),
    ("operation: MAX", 2), ("operation: MAX", 4)])
def test_gpu(device, settings, n):
    xs = [away_from(RNG.normal(size=GPU_SHAPE), [0.0], 0.1) for _ in range(n)]
    check_layer_gpu(f'type: "Eltwise" eltwise_param {{ {settings} }}', xs, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_max_ties_gpu(device):
    # Ties everywhere: the device must pick the CPU's (Caffe's) winners, gradient included.
    xs = [RNG.integers(0, 2, size=GPU_SHAPE).astype(float) for _ in range(3)]
    check_layer_gpu('type: "Eltwise" eltwise_param { operation: MAX }', xs, device=device,
                    rtol=0, atol=0)


def _in_place_at(text, xs, at, device=None):
    """Top data and bottom diffs (float32) of the layer run with its top being bottom ``at``."""
    layer = make_layer(text, TRAIN, np.float32)
    bottom = make_blobs(xs, np.float32)
    top = [bottom[at]]
    layer.setup(bottom, top)
    run_forward(layer, bottom, top)
    y = top[0].cpu_data.copy()
    top[0].set_diff(np.linspace(-1, 1, top[0].count, dtype=np.float32).reshape(top[0].shape))
    layer.backward(top, [True] * len(xs), bottom)
    return [y] + [b.cpu_diff.copy() for b in bottom]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["SUM", "MAX"])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_in_place_gpu(device, op, at):
    # In place on any bottom: the fold reads a later bottom the top overwrote from a copy, and
    # backward reads dy from a copy before the bottoms' diffs overwrite it.
    device_backend(device)
    text = f'type: "Eltwise" eltwise_param {{ operation: {op} }}'
    xs = [RNG.normal(size=GPU_SHAPE) for _ in range(3)]
    want = _in_place_at(text, xs, at)
    with running_on(device):
        got = _in_place_at(text, xs, at)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=f"result {i}")
