import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import RNG, away_from, check_in_place, check_layer, make_layer

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
