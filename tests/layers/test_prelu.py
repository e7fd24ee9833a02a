import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import RNG, away_from, check_in_place, check_layer, make_blobs, make_layer


def test_per_channel():
    x, a = away_from(RNG.normal(size=(2, 3, 4, 5)), [0.0]), RNG.normal(size=3)
    want = x.copy()
    for c in range(3):
        neg = x[:, c] < 0
        want[:, c][neg] = a[c] * x[:, c][neg]
    layer, _, _ = check_layer('type: "PReLU"', [x], [want], params=[a])
    assert layer.blobs[0].shape == (3,)


def test_channel_shared():
    x = away_from(RNG.normal(size=(2, 3, 5)), [0.0])
    layer, _, _ = check_layer('type: "PReLU" prelu_param { channel_shared: true }', [x],
                              [np.where(x > 0, x, -0.5 * x)], params=[-0.5])
    assert layer.blobs[0].shape == ()


def test_two_axes():
    x, a = away_from(RNG.normal(size=(4, 3)), [0.0]), np.array([0.1, 0.2, 0.3])
    check_layer('type: "PReLU"', [x], [np.where(x > 0, x, x * a)], params=[a])


def test_default_filler_is_a_quarter():
    x = away_from(RNG.normal(size=(2, 3, 4)), [0.0])
    layer, _, _ = check_layer('type: "PReLU"', [x], [np.where(x > 0, x, 0.25 * x)])
    np.testing.assert_array_equal(layer.blobs[0].data, 0.25)


def test_filler():
    text = 'type: "PReLU" prelu_param { filler { type: "constant" value: 0.5 } }'
    check_layer(text, [-np.ones((2, 3, 2))], [np.full((2, 3, 2), -0.5)], check_grad=False)


def test_in_place():
    check_in_place('type: "PReLU" prelu_param { filler { type: "gaussian" } }',
                   [away_from(RNG.normal(size=(2, 3, 4)), [0.0])])


def test_slope_gradient_accumulates():
    x = np.array([[-1.0, 2.0], [-3.0, 4.0]])
    layer, bottom, top = check_layer('type: "PReLU"', [x], check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    layer.backward(top, [False], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, [-8.0, 0.0])
    np.testing.assert_array_equal(bottom[0].diff, [[0.25, 1], [0.25, 1]])


def test_needs_two_axes():
    with pytest.raises(ConfnetError, match="at least 2 axes"):
        make_layer('type: "PReLU"').setup(make_blobs([np.zeros(4)]), make_blobs([0]))
