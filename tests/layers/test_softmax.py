import numpy as np
import pytest

from tests.layers.harness import DEVICES, RNG, check_in_place, check_layer, check_layer_gpu


def softmax_along(x, axis):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [1, 2, -1, 0])
def test_softmax(axis):
    x = RNG.normal(size=(2, 3, 4, 5))
    field = f"softmax_param {{ axis: {axis} }}" if axis != 1 else ""
    check_layer(f'type: "Softmax" {field}', [x], [softmax_along(x, axis)])


def test_softmax_large_inputs_stay_finite():
    x = np.array([[1000.0, 1001.0, 990.0], [-1000.0, -1000.0, -1000.0]])
    e = np.exp([-1.0, 0.0, -11.0])
    with np.errstate(over="raise"):
        check_layer('type: "Softmax"', [x], [[e / e.sum(), [1 / 3] * 3]], check_grad=False)


def test_softmax_in_place():
    check_in_place('type: "Softmax"', [RNG.normal(size=(3, 4, 2))])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, axis, in_place", [
    ((37, 45), 1, False),        # one warp per row: 45 classes wrap over the 32 lanes
    ((11, 3), -1, True),         # fewer classes than lanes, in place
    ((3, 5, 7), 1, False),       # inner > 1: one thread per position
    ((2, 3, 4, 5), 2, True),
])
def test_softmax_gpu(device, shape, axis, in_place):
    check_layer_gpu(f'type: "Softmax" softmax_param {{ axis: {axis} }}',
                    [RNG.normal(size=shape) * 4], device=device, in_place=in_place)
