import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_blobs, make_layer


def expected_loss(p, labels):
    n = p.shape[0]
    rows = p.reshape(n, -1)
    return -sum(np.log(max(rows[i, int(labels.ravel()[i])], 1e-20)) for i in range(n)) / n


def probabilities(shape):
    e = np.exp(RNG.normal(size=shape))
    return e / e.reshape(shape[0], -1).sum(axis=1).reshape((-1,) + (1,) * (len(shape) - 1))


@pytest.mark.parametrize("shape, label_shape", [((5, 4), (5,)), ((3, 6, 1, 1), (3, 1, 1, 1))])
def test_loss(shape, label_shape):
    p = probabilities(shape)
    labels = RNG.integers(0, shape[1], size=label_shape).astype(float)
    check_layer('type: "MultinomialLogisticLoss"', [p, labels], [expected_loss(p, labels)],
                no_grad=(1,))


def test_zero_probability_is_clamped():
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0.0, 1.0])
    threshold = float(np.float32(1e-20))
    layer, bottom, top = check_layer('type: "MultinomialLogisticLoss"', [p, labels],
                                     [-(np.log(threshold) + np.log(0.5)) / 2], no_grad=(1,),
                                     check_grad=False)
    top[0].diff[...] = 1.0
    layer.backward(top, [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, [[-0.5 / threshold, 0.0], [0.0, -1.0]])


def test_one_label_per_item():
    layer = make_layer('type: "MultinomialLogisticLoss"', name="nll")
    with pytest.raises(ConfnetError, match="layer 'nll'.*4 labels for 2 predictions"):
        layer.setup(make_blobs([np.ones((2, 3)), np.zeros((2, 2))]), make_blobs([0.0]))


def test_no_gradient_to_labels():
    layer = make_layer('type: "MultinomialLogisticLoss"')
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, label_shape", [((37, 5), (37,)), ((3, 7, 1, 1), (3, 1, 1, 1))])
def test_gpu(device, shape, label_shape):
    p = probabilities(shape)
    p[0] = 0.0   # clamped at 1e-20 on both sides, whatever the label of row 0
    labels = RNG.integers(0, shape[1], size=label_shape).astype(float)
    check_layer_gpu('type: "MultinomialLogisticLoss"', [p, labels], device=device, no_grad=(1,))
