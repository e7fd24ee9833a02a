import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_blobs, make_layer


def expected_loss(a, b, y, margin, legacy):
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        d2 = float(np.sum((a[i] - b[i]) ** 2))
        if int(y.ravel()[i]):
            total += d2
        elif legacy:
            total += max(margin - d2, 0.0)
        else:
            total += max(margin - np.sqrt(d2), 0.0) ** 2
    return total / n / 2


def pairs(n, channels, margin, legacy, shape_tail=()):
    """Pairs whose distance stays clear of the margin (the loss has a kink there); about half of
    the dissimilar ones are inside the margin."""
    a = RNG.normal(size=(n, channels))
    direction = RNG.normal(size=(n, channels))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    edge = margin if not legacy else np.sqrt(margin)
    dist = edge * RNG.choice([0.4, 0.7, 1.3, 1.8], size=n)
    b = a + dist[:, None] * direction
    y = (np.arange(n) % 3 == 0).astype(float)
    return a.reshape((n, channels) + shape_tail), b.reshape((n, channels) + shape_tail), y


@pytest.mark.parametrize("legacy", [False, True])
def test_loss_and_both_gradients(legacy):
    margin = 1.5
    a, b, y = pairs(9, 4, margin, legacy)
    text = (f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
            f'legacy_version: {str(legacy).lower()} }}')
    # Caffe divides by d + 1e-4 instead of d: that much relative error in the gradient.
    check_layer(text, [a, b, y], [expected_loss(a, b, y, margin, legacy)], no_grad=(2,),
                grad_rtol=1e-3)


def test_default_margin_and_caffe_shapes():
    a, b, y = pairs(6, 3, 1.0, False, shape_tail=(1, 1))
    check_layer('type: "ContrastiveLoss"', [a, b, y.reshape(6, 1, 1, 1)],
                [expected_loss(a, b, y, 1.0, False)], no_grad=(2,), grad_rtol=1e-3)


def test_no_gradient_to_similarity():
    layer = make_layer('type: "ContrastiveLoss"')
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, True, False]


@pytest.mark.parametrize("shapes, message", [
    (((2, 3), (2, 4), (2,)), "same channels"),
    (((2, 3, 2, 1), (2, 3, 2, 1), (2,)), r"must be \(N, C\)"),
    (((2, 3), (2, 3), (3,)), "one similarity value per pair"),
])
def test_shape_errors(shapes, message):
    layer = make_layer('type: "ContrastiveLoss"', name="siamese")
    with pytest.raises(ConfnetError, match=f"layer 'siamese'.*{message}"):
        layer.setup(make_blobs([np.zeros(s) for s in shapes]), make_blobs([0.0]))


@pytest.mark.parametrize("legacy", [False, True])
def test_gradient_is_caffes(legacy):
    """The gradient Caffe computes, pair by pair (with its 1e-4 guard), tightly."""
    margin, n = 2.0, 6
    a, b, y = pairs(n, 3, margin, legacy)
    text = (f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
            f'legacy_version: {str(legacy).lower()} }}')
    layer, bottom, top = check_layer(text, [a, b, y], check_grad=False)
    top[0].diff[...] = 0.7
    layer.backward(top, [True, True, False], bottom)
    want = np.zeros_like(a)
    for i in range(n):
        delta = a[i] - b[i]
        d = np.sqrt(delta @ delta)
        if int(y[i]):
            want[i] = delta
        elif legacy and margin - d * d > 0:
            want[i] = -delta
        elif not legacy and margin - d > 0:
            want[i] = -(margin - d) / (d + 1e-4) * delta
    want *= 0.7 / n
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-12)
    np.testing.assert_allclose(bottom[1].diff, -want, rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("n, channels, tail", [(37, 3, ()), (5, 11, (1, 1))])
def test_gpu(device, legacy, n, channels, tail):
    margin = 1.5
    a, b, y = pairs(n, channels, margin, legacy, shape_tail=tail)
    b[0] = a[0]   # a dissimilar pair at distance 0: the 1e-4 guard on both sides
    y[0] = 0.0
    text = (f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
            f'legacy_version: {str(legacy).lower()} }}')
    check_layer_gpu(text, [a, b, y], device=device, no_grad=(2,))
