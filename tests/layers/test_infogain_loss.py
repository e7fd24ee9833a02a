import numpy as np
import pytest

from confnet.errors import ConfnetError
from confnet.proto.io import write_binaryproto
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_blobs, make_layer
from tests.layers.test_softmax_loss import expected_loss as softmax_loss


def expected_loss(x, labels, h, axis, normalizer, ignore=None):
    """Softmax along ``axis``, then -sum_l H[label, l] log p_l per position, position by
    position."""
    x = np.moveaxis(x, axis, -1)
    rows = x.reshape(-1, x.shape[-1])
    labels = labels.reshape(-1).astype(int)
    total, valid = 0.0, 0
    for s, k in zip(rows, labels):
        if k == ignore:
            continue
        p = np.exp(s) / np.exp(s).sum()
        total -= sum(h[k, l] * np.log(p[l]) for l in range(len(s)))
        valid += 1
    return total / max(1, normalizer(valid, len(labels), x.shape[0]))


NORMALIZERS = {
    "VALID": lambda valid, full, batch: valid,
    "FULL": lambda valid, full, batch: full,
    "BATCH_SIZE": lambda valid, full, batch: batch,
    "NONE": lambda valid, full, batch: 1,
}


def infogain(classes):
    """A positive matrix, rounded to float32 as it is when stored in a .binaryproto."""
    h = RNG.random((classes, classes)) + 0.2 * np.eye(classes)
    return h.astype(np.float32).astype(np.float64)


def labels_for(shape, classes, ignore=None):
    labels = RNG.integers(0, classes, size=shape).astype(float)
    if ignore is not None:
        labels[RNG.random(shape) < 0.3] = ignore
    return labels


def source_text(path, extra=""):
    return f'type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }} {extra}'


def test_matrix_from_source(tmp_path):
    x, labels, h = RNG.normal(size=(4, 5)), labels_for((4,), 5), infogain(5)
    path = tmp_path / "H.binaryproto"
    write_binaryproto(h.reshape(1, 1, 5, 5), path)
    check_layer(source_text(path), [x, labels],
                [expected_loss(x, labels, h, 1, NORMALIZERS["VALID"])], no_grad=(1,))


def test_identity_matrix_is_softmax_with_loss(tmp_path):
    x, labels = RNG.normal(size=(3, 4, 2)), labels_for((3, 2), 4)
    path = tmp_path / "I.binaryproto"
    write_binaryproto(np.eye(4), path)
    want = softmax_loss(x, labels, 1, lambda valid, full, batch: valid)
    check_layer(source_text(path), [x, labels], [want], no_grad=(1,), check_grad=False)


@pytest.mark.parametrize("mode", sorted(NORMALIZERS))
def test_matrix_as_bottom_with_ignore_label(mode):
    x, labels, h = RNG.normal(size=(2, 3, 2, 2)), labels_for((2, 1, 2, 2), 3, ignore=-1), \
        infogain(3)
    text = f'type: "InfogainLoss" loss_param {{ ignore_label: -1 normalization: {mode} }}'
    check_layer(text, [x, labels, h],
                [expected_loss(x, labels, h, 1, NORMALIZERS[mode], ignore=-1)], no_grad=(1, 2))


@pytest.mark.parametrize("axis", [2, -1])
def test_axis(axis):
    x, labels, h = RNG.normal(size=(2, 3, 4)), labels_for((2, 3), 4), infogain(4)
    text = f'type: "InfogainLoss" infogain_loss_param {{ axis: {axis} }}'
    check_layer(text, [x, labels, h],
                [expected_loss(x, labels, h, 2, NORMALIZERS["VALID"])], no_grad=(1, 2))


def test_probability_top():
    x, labels, h = RNG.normal(size=(3, 4)), labels_for((3,), 4), infogain(4)
    prob = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    layer, _, _ = check_layer('type: "InfogainLoss"', [x, labels, h],
                              [expected_loss(x, labels, h, 1, NORMALIZERS["VALID"]), prob],
                              no_grad=(1, 2))
    assert layer.loss_weights == [1.0, 0.0]


def test_gradient_only_to_scores():
    layer = make_layer('type: "InfogainLoss"')
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, False, False]
    bottom = make_blobs([RNG.normal(size=(2, 3)), np.array([0.0, 2.0]), np.eye(3)])
    top = make_blobs([0.0])
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    with pytest.raises(ConfnetError, match="infogain matrix"):
        layer.backward(top, [True, False, True], bottom)


def setup(text, arrays):
    layer = make_layer(text, name="info")
    layer.setup(make_blobs(arrays), make_blobs([0.0]))


def test_needs_a_matrix():
    with pytest.raises(ConfnetError, match="layer 'info'.*infogain_loss_param.source"):
        setup('type: "InfogainLoss"', [np.zeros((2, 3)), np.zeros(2)])


def test_matrix_given_twice(tmp_path):
    with pytest.raises(ConfnetError, match="give only one"):
        setup(source_text(tmp_path / "H"), [np.zeros((2, 3)), np.zeros(2), np.eye(3)])


def test_matrix_of_wrong_size():
    with pytest.raises(ConfnetError, match="3 classes need 3x3"):
        setup('type: "InfogainLoss"', [np.zeros((2, 3)), np.zeros(2), np.eye(2)])


def test_normalize_is_refused():
    with pytest.raises(ConfnetError, match="normalize is deprecated"):
        setup('type: "InfogainLoss" loss_param { normalize: true }',
              [np.zeros((2, 3)), np.zeros(2), np.eye(3)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, axis, settings, num_top", [
    ((37, 5), 1, "loss_param { ignore_label: -1 }", 2),                    # VALID, p as a top
    ((3, 7, 5), 1, "loss_param { ignore_label: -1 normalization: FULL }", 1),  # inner > 1
    ((2, 3, 7), 2, "loss_param { normalization: BATCH_SIZE }", 2),
])
def test_gpu(device, shape, axis, settings, num_top):
    classes = shape[axis]
    x = RNG.normal(size=shape)
    labels = labels_for(shape[:axis] + shape[axis + 1:], classes, ignore=-1 if "-1" in settings
                        else None)
    text = f'type: "InfogainLoss" infogain_loss_param {{ axis: {axis} }} {settings}'
    check_layer_gpu(text, [x, labels, infogain(classes)], device=device, num_top=num_top,
                    no_grad=(1, 2))


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_matrix_from_source(device, tmp_path):
    path = tmp_path / "H.binaryproto"
    write_binaryproto(infogain(6).reshape(1, 1, 6, 6), path)
    check_layer_gpu(source_text(path), [RNG.normal(size=(11, 6)), labels_for((11,), 6)],
                    device=device, no_grad=(1,))
