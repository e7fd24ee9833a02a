import numpy as np
import pytest

from confnet.blob import Blob
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


def expected_loss(x, t, normalizer, ignore=None):
    """Element by element from the textbook formula with p = 1 / (1 + exp(-x))."""
    total, valid = 0.0, 0
    for xi, ti in zip(x.ravel(), t.ravel()):
        if ignore is not None and int(ti) == ignore:
            continue
        p = 1.0 / (1.0 + np.exp(-xi))
        total -= ti * np.log(p) + (1 - ti) * np.log(1 - p)
        valid += 1
    return total / max(1, normalizer(valid, x.size, x.shape[0]))


NORMALIZERS = {
    "VALID": lambda valid, full, batch: valid,
    "FULL": lambda valid, full, batch: full,
    "BATCH_SIZE": lambda valid, full, batch: batch,
    "NONE": lambda valid, full, batch: 1,
}


def targets(shape, ignore=None):
    t = RNG.random(shape)
    t[RNG.random(shape) < 0.3] = 1.0
    if ignore is not None:
        t[RNG.random(shape) < 0.25] = ignore
    return t


def test_default_divides_by_the_batch_size():
    x, t = RNG.normal(size=(4, 3, 2)), targets((4, 3, 2))
    check_layer('type: "SigmoidCrossEntropyLoss"', [x, t],
                [expected_loss(x, t, NORMALIZERS["BATCH_SIZE"])], no_grad=(1,))


@pytest.mark.parametrize("mode", sorted(NORMALIZERS))
def test_normalization_with_ignore_label(mode):
    x, t = 2 * RNG.normal(size=(3, 5)), targets((3, 5), ignore=-1)
    text = ('type: "SigmoidCrossEntropyLoss" '
            f'loss_param {{ ignore_label: -1 normalization: {mode} }}')
    check_layer(text, [x, t], [expected_loss(x, t, NORMALIZERS[mode], ignore=-1)],
                no_grad=(1,))


@pytest.mark.parametrize("normalize, mode", [("true", "VALID"), ("false", "BATCH_SIZE")])
def test_legacy_normalize(normalize, mode):
    x, t = RNG.normal(size=(2, 6)), targets((2, 6), ignore=3)
    text = ('type: "SigmoidCrossEntropyLoss" '
            f'loss_param {{ ignore_label: 3 normalize: {normalize} }}')
    check_layer(text, [x, t], [expected_loss(x, t, NORMALIZERS[mode], ignore=3)], no_grad=(1,))


def test_stable_for_large_scores():
    x = np.array([[100.0, -100.0, 100.0, -100.0, 40.0]])
    t = np.array([[0.0, 0.0, 1.0, 1.0, 0.5]])
    want = 100.0 + 0.0 + 0.0 + 100.0 + (40.0 - 20.0 + np.log1p(np.exp(-40.0)))
    _, _, top = check_layer('type: "SigmoidCrossEntropyLoss"', [x, t], [want], no_grad=(1,))
    assert np.isfinite(top[0].data).all()


def test_every_target_ignored():
    x = RNG.normal(size=(2, 3))
    check_layer('type: "SigmoidCrossEntropyLoss" loss_param { ignore_label: 7 '
                'normalization: VALID }', [x, np.full((2, 3), 7.0)], [0.0], no_grad=(1,))


def test_no_gradient_to_targets():
    layer = make_layer('type: "SigmoidCrossEntropyLoss"')
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, settings", [
    ((3, 37), ""),                                               # the default: BATCH_SIZE
    ((5, 3, 7), "loss_param { ignore_label: -1 normalization: VALID }"),
    ((2, 301), "loss_param { ignore_label: -1 normalization: FULL }"),   # > one block of terms
    ((3, 5), "loss_param { ignore_label: 7 normalization: VALID }"),     # nothing counts
])
def test_gpu(device, shape, settings):
    x = 3 * RNG.normal(size=shape)
    x.flat[:2] = [60.0, -60.0]   # the stable form keeps large scores finite on both sides
    t = targets(shape, ignore=-1)
    if "ignore_label: 7" in settings:
        t[...] = 7.0
    check_layer_gpu(f'type: "SigmoidCrossEntropyLoss" {settings}', [x, t], device=device,
                    no_grad=(1,))


def test_gpu_loss_is_bit_reproducible_across_thread_orders():
    """loss_reduce (every loss's sum, cuda/loss.cu) adds in an order fixed by the thread indices,
    never by timing: the emulator's three thread orders give the same bits."""
    device_backend("emu")
    x, t = 3 * RNG.normal(size=(7, 131)), targets((7, 131), ignore=-1)
    text = 'type: "SigmoidCrossEntropyLoss" loss_param { ignore_label: -1 normalization: VALID }'
    losses = set()
    for order in ("forward", "reverse", "random"):
        layer = make_layer(text, dtype=np.float32)
        with running_on("emu", order):
            bottom, top = make_blobs([x, t], np.float32), [Blob()]
            layer.setup(bottom, top)
            layer.forward(bottom, top)
            losses.add(top[0].cpu_data.tobytes())
    assert len(losses) == 1
