import numpy as np
import pytest

from tests.layers.harness import RNG, check_in_place, check_layer


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
