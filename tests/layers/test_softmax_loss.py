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


def expected_loss(x, labels, axis, normalizer, ignore=None):
    """Softmax along ``axis`` and the mean negative log-likelihood, written element by element."""
    x = np.moveaxis(x, axis, -1)
    scores = x.reshape(-1, x.shape[-1])
    labels = labels.reshape(-1).astype(int)
    total, valid = 0.0, 0
    for s, k in zip(scores, labels):
        if k == ignore:
            continue
        total -= s[k] - np.log(np.sum(np.exp(s)))
        valid += 1
    return total / max(1, normalizer(valid, len(labels), x.shape[0]))


def labels_for(shape, classes, ignore=None, fraction=0.3):
    labels = RNG.integers(0, classes, size=shape).astype(float)
    if ignore is not None:
        labels[RNG.random(shape) < fraction] = ignore
    return labels


def test_plain():
    x = RNG.normal(size=(5, 4))
    labels = labels_for((5,), 4)
    check_layer('type: "SoftmaxWithLoss"', [x, labels],
                [expected_loss(x, labels, 1, lambda valid, full, batch: valid)], no_grad=(1,))


NORMALIZERS = {
    "VALID": lambda valid, full, batch: valid,
    "FULL": lambda valid, full, batch: full,
    "BATCH_SIZE": lambda valid, full, batch: batch,
    "NONE": lambda valid, full, batch: 1,
}


@pytest.mark.parametrize("mode", sorted(NORMALIZERS))
def test_spatial_labels_with_ignore(mode):
    x = RNG.normal(size=(2, 3, 4, 5))
    labels = labels_for((2, 1, 4, 5), 3, ignore=255)
    text = ('type: "SoftmaxWithLoss" '
            f'loss_param {{ ignore_label: 255 normalization: {mode} }}')
    check_layer(text, [x, labels], [expected_loss(x, labels, 1, NORMALIZERS[mode], ignore=255)],
                no_grad=(1,))


@pytest.mark.parametrize("normalize, mode", [("true", "VALID"), ("false", "BATCH_SIZE")])
def test_legacy_normalize(normalize, mode):
    x = RNG.normal(size=(3, 4, 2))
    labels = labels_for((3, 2), 4, ignore=1)
    text = f'type: "SoftmaxWithLoss" loss_param {{ ignore_label: 1 normalize: {normalize} }}'
    check_layer(text, [x, labels], [expected_loss(x, labels, 1, NORMALIZERS[mode], ignore=1)],
                no_grad=(1,))


def test_normalization_wins_over_normalize():
    x = RNG.normal(size=(3, 4, 2))
    labels = labels_for((3, 2), 4)
    text = 'type: "SoftmaxWithLoss" loss_param { normalize: true normalization: NONE }'
    check_layer(text, [x, labels], [expected_loss(x, labels, 1, NORMALIZERS["NONE"])],
                no_grad=(1,), check_grad=False)


@pytest.mark.parametrize("axis", [3, -1])
def test_channels_last(axis):
    x = RNG.normal(size=(2, 3, 4, 6))
    labels = labels_for((2, 3, 4), 6, ignore=-1)
    text = (f'type: "SoftmaxWithLoss" softmax_param {{ axis: {axis} }} '
            'loss_param { ignore_label: -1 }')
    check_layer(text, [x, labels], [expected_loss(x, labels, 3, NORMALIZERS["VALID"], -1)],
                no_grad=(1,))


def test_probability_top():
    x = RNG.normal(size=(4, 3, 2))
    labels = labels_for((4, 2), 3)
    e = np.exp(x)
    prob = e / e.sum(axis=1, keepdims=True)
    layer, _, _ = check_layer('type: "SoftmaxWithLoss"', [x, labels],
                              [expected_loss(x, labels, 1, NORMALIZERS["VALID"]), prob],
                              no_grad=(1,))
    assert layer.loss_weights == [1.0, 0.0]


def test_every_label_ignored():
    x = RNG.normal(size=(3, 4))
    check_layer('type: "SoftmaxWithLoss" loss_param { ignore_label: 2 }', [x, np.full(3, 2.0)],
                [0.0], no_grad=(1,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, ignore, normalization, num_top", [
    ((37, 45), None, "", 1),                               # a warp per row, 45 classes
    ((13, 10), None, "normalization: FULL", 2),            # with the probability top
    ((3, 5, 7), 2, "normalization: VALID", 1),             # inner > 1, some ignored
    ((2, 3, 4, 5), 0, "normalization: BATCH_SIZE", 2),
    ((3, 4, 5), 1, "normalize: false", 1),
    ((5, 3), 1, "normalization: NONE", 1),
])
def test_gpu(device, shape, ignore, normalization, num_top):
    labels = labels_for((shape[0],) + shape[2:], shape[1], ignore=ignore)
    ignore_field = f"ignore_label: {ignore}" if ignore is not None else ""
    check_layer_gpu(f'type: "SoftmaxWithLoss" loss_param {{ {ignore_field} {normalization} }}',
                    [RNG.normal(size=shape) * 3, labels], device=device, num_top=num_top,
                    no_grad=(1,))


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_every_label_ignored(device):
    want = check_layer_gpu('type: "SoftmaxWithLoss" loss_param { ignore_label: 2 }',
                           [RNG.normal(size=(3, 4)), np.full(3, 2.0)], device=device,
                           no_grad=(1,))
    assert want["top 0 data"] == 0 and not want["bottom 0 diff"].any()


def setup_loss(labels, scores_shape=(2, 3), name="loss"):
    layer = make_layer('type: "SoftmaxWithLoss"', name=name)
    bottom = make_blobs([RNG.normal(size=scores_shape), labels])
    top = [Blob((), np.float64)]
    layer.setup(bottom, top)
    return layer, bottom, top


@pytest.mark.parametrize("bad", [3.0, -1.0])
def test_label_out_of_range(bad):
    layer, bottom, top = setup_loss(np.array([1.0, bad]))
    with pytest.raises(ConfnetError, match=r"layer 'loss'.*label -?\d+ at index \(1,\).*0\.\.2"):
        layer.forward(bottom, top)


def test_label_count_mismatch():
    with pytest.raises(ConfnetError, match="layer 'loss'.*6 labels for 2 predictions"):
        setup_loss(np.zeros((2, 3)))


def test_no_gradient_to_labels():
    layer, bottom, top = setup_loss(np.array([0.0, 1.0]))
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(1)
    with pytest.raises(ConfnetError, match="labels"):
        layer.backward(top, [True, True], bottom)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_label_out_of_range_reads_nan(device):
    # The device cannot raise the CPU's error without a copy back: the loss becomes NaN.
    device_backend(device)
    layer = make_layer('type: "SoftmaxWithLoss"', dtype=np.float32)
    bottom, top = make_blobs([RNG.normal(size=(2, 3)), [1.0, 3.0]], np.float32), [Blob()]
    with running_on(device):
        layer.setup(bottom, top)
        layer.forward(bottom, top)
        assert np.isnan(top[0].cpu_data)
