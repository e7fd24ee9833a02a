import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    away_from,
    check_layer,
    check_layer_gpu,
    device_backend,
    make_blobs,
    make_layer,
    running_on,
)


def expected_loss(x, labels, power):
    n = x.shape[0]
    scores = x.reshape(n, -1)
    total = 0.0
    for i in range(n):
        for k, s in enumerate(scores[i]):
            sign = -1.0 if k == int(labels.ravel()[i]) else 1.0
            total += max(0.0, 1.0 + sign * s) ** power
    return total / n


def scores(shape):
    return away_from(RNG.normal(scale=1.5, size=shape), [1.0, -1.0], margin=0.05)


@pytest.mark.parametrize("norm, power", [("L1", 1), ("L2", 2)])
def test_norms(norm, power):
    x, labels = scores((5, 4)), RNG.integers(0, 4, size=5).astype(float)
    check_layer(f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', [x, labels],
                [expected_loss(x, labels, power)], no_grad=(1,))


def test_default_is_l1_and_scores_are_flattened():
    x, labels = scores((3, 2, 3)), RNG.integers(0, 6, size=(3, 1, 1, 1)).astype(float)
    check_layer('type: "HingeLoss"', [x, labels], [expected_loss(x, labels, 1)], no_grad=(1,))


def test_label_out_of_range():
    layer = make_layer('type: "HingeLoss"', name="svm")
    bottom, top = make_blobs([np.zeros((2, 3)), np.array([0.0, 3.0])]), make_blobs([0.0])
    layer.setup(bottom, top)
    with pytest.raises(ConfnetError, match="layer 'svm'.*label 3"):
        layer.forward(bottom, top)


def test_no_gradient_to_labels():
    layer = make_layer('type: "HingeLoss"')
    assert not layer.allow_force_backward(1)
    bottom, top = make_blobs([np.zeros((2, 3)), np.array([0.0, 1.0])]), make_blobs([0.0])
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    with pytest.raises(ConfnetError, match="labels"):
        layer.backward(top, [True, True], bottom)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape", [(7, 5), (3, 37, 3)])   # scores flattened to (N, 111)
def test_gpu(device, norm, shape):
    x = scores(shape)
    labels = RNG.integers(0, x[0].size, size=shape[0]).astype(float)
    check_layer_gpu(f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', [x, labels],
                    device=device, no_grad=(1,))


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_label_out_of_range_reads_nan(device):
    # The device cannot raise the CPU's error without a copy back: the loss becomes NaN.
    device_backend(device)
    layer = make_layer('type: "HingeLoss"', dtype=np.float32)
    bottom, top = make_blobs([RNG.normal(size=(2, 3)), [1.0, 3.0]], np.float32), [Blob()]
    with running_on(device):
        layer.setup(bottom, top)
        layer.forward(bottom, top)
        assert np.isnan(top[0].cpu_data)
