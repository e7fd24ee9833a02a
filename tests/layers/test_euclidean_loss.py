import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    make_blobs,
    make_layer,
)


def expected_loss(a, b):
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        d = a[i].ravel() - b[i].ravel()
        total += float(d @ d)
    return total / n / 2


def test_both_bottoms_get_gradients():
    a, b = RNG.normal(size=(4, 3, 2, 2)), RNG.normal(size=(4, 3, 2, 2))
    check_layer('type: "EuclideanLoss"', [a, b], [expected_loss(a, b)])


def test_shapes_may_differ_beyond_the_batch_axis():
    a, b = RNG.normal(size=(3, 6)), RNG.normal(size=(3, 2, 3))
    check_layer('type: "EuclideanLoss"', [a, b], [expected_loss(a, b)])


def test_loss_weight_scales_the_gradient():
    a, b = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    layer, bottom, top = check_layer('type: "EuclideanLoss" loss_weight: 2.5', [a, b],
                                     [expected_loss(a, b)], check_grad=False)
    assert layer.loss_weights == [2.5]
    top[0].diff[...] = 2.5
    layer.backward(top, [True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff, 2.5 * (a - b) / 2)
    np.testing.assert_allclose(bottom[1].diff, -2.5 * (a - b) / 2)


def test_force_backward_reaches_both_bottoms():
    layer = make_layer('type: "EuclideanLoss"')
    assert layer.allow_force_backward(0) and layer.allow_force_backward(1)


def test_count_mismatch():
    layer = make_layer('type: "EuclideanLoss"', name="l2")
    bottom = make_blobs([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ConfnetError, match="layer 'l2'.*same number of values per item"):
        layer.setup(bottom, make_blobs([0.0]))


def test_normalization_is_not_supported():
    with pytest.raises(ConfnetError, match="loss_param"):
        make_layer('type: "EuclideanLoss" loss_param { normalization: FULL }')


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shapes, no_grad", [
    (((3, 5, 7), (3, 5, 7)), ()),
    (((7, 149), (7, 149)), (0,)),        # more elements than one reduction block; only b's
    (((5, 6), (5, 2, 3)), (1,)),         # shapes differ beyond the batch axis
])
def test_gpu(device, shapes, no_grad):
    bottoms = [RNG.normal(size=s) for s in shapes]
    check_layer_gpu('type: "EuclideanLoss"', bottoms, device=device, no_grad=no_grad)
