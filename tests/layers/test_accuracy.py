import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    device_backend,
    make_blobs,
    make_layer,
    running_on,
)


def expected_accuracy(x, labels, top_k, classes_axis=1, ignore=None):
    """Overall and per-class accuracy, one prediction at a time: correct when the label is among
    the top_k highest scores (the inputs have no ties)."""
    x = np.moveaxis(x, classes_axis, -1)
    classes = x.shape[-1]
    hits, seen = np.zeros(classes), np.zeros(classes)
    for scores, label in zip(x.reshape(-1, classes), labels.reshape(-1).astype(int)):
        if label == ignore:
            continue
        seen[label] += 1
        hits[label] += label in np.argsort(-scores)[:top_k]
    per_class = np.array([h / s if s else 0.0 for h, s in zip(hits, seen)])
    return hits.sum() / max(seen.sum(), 1), per_class


@pytest.mark.parametrize("top_k", [1, 3])
def test_top_k(top_k):
    x = RNG.normal(size=(40, 6))
    labels = RNG.integers(0, 6, size=40).astype(float)
    total, per_class = expected_accuracy(x, labels, top_k)
    check_layer(f'type: "Accuracy" accuracy_param {{ top_k: {top_k} }}', [x, labels],
                [total, per_class], check_grad=False)


def test_ignore_label_and_per_class():
    x = RNG.normal(size=(30, 5))
    labels = RNG.integers(0, 5, size=30).astype(float)
    labels[labels == 4] = -1   # class 4 never occurs: its per-class accuracy is 0
    labels[:3] = -1
    total, per_class = expected_accuracy(x, labels, 2, ignore=-1)
    check_layer('type: "Accuracy" accuracy_param { top_k: 2 ignore_label: -1 }', [x, labels],
                [total, per_class], check_grad=False)
    assert per_class[4] == 0


def test_spatial_axis():
    x = RNG.normal(size=(2, 3, 4, 5))
    labels = RNG.integers(0, 4, size=(2, 3, 1, 5)).astype(float)
    total, _ = expected_accuracy(x, labels, 1, classes_axis=2)
    check_layer('type: "Accuracy" accuracy_param { axis: 2 }', [x, labels], [total],
                check_grad=False)


def test_ties_count_against_the_label():
    x = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    check_layer('type: "Accuracy"', [x, np.array([1.0, 1.0])], [0.0], check_grad=False)
    check_layer('type: "Accuracy" accuracy_param { top_k: 2 }', [x, np.array([1.0, 1.0])], [1.0],
                check_grad=False)


def test_nothing_counted_gives_zero():
    check_layer('type: "Accuracy" accuracy_param { ignore_label: 0 }',
                [RNG.normal(size=(3, 2)), np.zeros(3)], [0.0], check_grad=False)


def test_no_gradient():
    layer = make_layer('type: "Accuracy"', name="acc")
    assert not layer.allow_force_backward(0) and not layer.allow_force_backward(1)
    with pytest.raises(ConfnetError, match="layer 'acc'.*no gradient"):
        layer.backward([Blob()], [True, False], [Blob(), Blob()])


def test_top_k_more_than_classes():
    layer = make_layer('type: "Accuracy" accuracy_param { top_k: 4 }', name="acc")
    with pytest.raises(ConfnetError, match="top_k 4 is more than the number of classes 3"):
        layer.setup(make_blobs([np.zeros((2, 3)), np.zeros(2)]), [Blob()])


def test_label_out_of_range():
    layer = make_layer('type: "Accuracy"', name="acc")
    bottom, top = make_blobs([np.zeros((2, 3)), np.array([0.0, 3.0])]), [Blob()]
    layer.setup(bottom, top)
    with pytest.raises(ConfnetError, match="layer 'acc'.*label 3 at index \\(1,\\)"):
        layer.forward(bottom, top)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, axis, settings, num_top", [
    ((37, 6), 1, "top_k: 1", 2),
    ((29, 7), 1, "top_k: 3 ignore_label: 4", 2),
    ((3, 5, 7), 1, "ignore_label: 0", 1),   # inner > 1
    ((2, 3, 4, 5), 3, "top_k: 2", 2),       # classes last
])
def test_gpu(device, shape, axis, settings, num_top):
    labels = RNG.integers(0, shape[axis], size=shape[:axis] + shape[axis + 1:])
    x = RNG.normal(size=shape)
    x[0, ...] = 0.5   # ties in image 0: they count against the label on both sides
    check_layer_gpu(f'type: "Accuracy" accuracy_param {{ axis: {axis} {settings} }}',
                    [x, labels.astype(float)], device=device, num_top=num_top, backward=False,
                    rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_label_out_of_range_reads_nan(device):
    # The device cannot raise the CPU's error without a copy back: the accuracy becomes NaN.
    device_backend(device)
    layer = make_layer('type: "Accuracy"', dtype=np.float32)
    bottom, top = make_blobs([RNG.normal(size=(2, 3)), [1.0, 3.0]], np.float32), [Blob()]
    with running_on(device):
        layer.setup(bottom, top)
        layer.forward(bottom, top)
        assert np.isnan(top[0].cpu_data)
