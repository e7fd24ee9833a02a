import logging

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    make_blobs,
    make_layer,
)


def reference_across(x, size, alpha, beta, k):
    """Caffe's test: scale = k + alpha / size * sum of x^2 over the channels [c - pre, c + pre]
    that exist."""
    y = np.empty_like(x)
    pre = (size - 1) // 2
    for c in range(x.shape[1]):
        lo, hi = max(c - pre, 0), min(c + pre + 1, x.shape[1])
        scale = k + alpha / size * np.sum(x[:, lo:hi] ** 2, axis=1)
        y[:, c] = x[:, c] * scale ** -beta
    return y


def reference_within(x, size, alpha, beta):
    """Caffe's pooling + power: the AVE pooling of x^2 with pad (size - 1) / 2 divides by its
    padded window, size^2, at every pixel; then (1 + alpha * mean)^-beta."""
    y = np.empty_like(x)
    pre = (size - 1) // 2
    height, width = x.shape[2:]
    for h in range(height):
        for w in range(width):
            h0, w0 = h - pre, w - pre
            h1, w1 = min(h0 + size, height + pre), min(w0 + size, width + pre)
            pool_size = (h1 - h0) * (w1 - w0)
            cells = x[:, :, max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)]
            mean = np.sum(cells ** 2, axis=(2, 3)) / pool_size
            y[:, :, h, w] = x[:, :, h, w] * (1 + alpha * mean) ** -beta
    return y


@pytest.mark.parametrize("fields, size, alpha, beta, k", [
    ("", 5, 1.0, 0.75, 1.0),
    ("local_size: 3 alpha: 0.5 beta: 0.6 k: 2", 3, 0.5, 0.6, 2.0),
    # A window wider than the channels: every channel sees all of them.
    ("local_size: 9 alpha: 2 beta: 1.2 k: 0.5", 9, 2.0, 1.2, 0.5),
])
def test_across_channels(fields, size, alpha, beta, k):
    x = RNG.normal(size=(2, 7, 3, 2))
    check_layer(f'type: "LRN" lrn_param {{ {fields} }}', [x],
                [reference_across(x, size, alpha, beta, k)])


@pytest.mark.parametrize("size, alpha, beta", [(3, 1.0, 0.75), (5, 2.0, 0.5)])
def test_within_channel(size, alpha, beta):
    x = RNG.normal(size=(2, 2, 5, 6))
    text = (f'type: "LRN" lrn_param {{ norm_region: WITHIN_CHANNEL local_size: {size} '
            f'alpha: {alpha} beta: {beta} }}')
    check_layer(text, [x], [reference_within(x, size, alpha, beta)])


def test_within_channel_ignores_k_as_caffe_and_says_so(caplog):
    x = RNG.normal(size=(1, 2, 4, 4))
    text = 'type: "LRN" lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 k: 2 }'
    with caplog.at_level(logging.WARNING, logger="confnet"):
        check_layer(text, [x], [reference_within(x, 3, 1.0, 0.75)], check_grad=False)
    assert "k = 2 is not used by WITHIN_CHANNEL" in caplog.text


def test_in_place_equals_out_of_place():
    x, dy = RNG.normal(size=(2, 5, 3, 3)), RNG.normal(size=(2, 5, 3, 3))
    text = 'type: "LRN" lrn_param { local_size: 3 }'
    layer, bottom, top = check_layer(text, [x], check_grad=False)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    layer = make_layer(text)
    blob = make_blobs([x])
    layer.setup(blob, blob)
    layer.forward(blob, blob)
    blob[0].diff[...] = dy
    layer.backward(blob, [True], blob)
    np.testing.assert_allclose(blob[0].data, top[0].data)
    np.testing.assert_allclose(blob[0].diff, bottom[0].diff)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fields, shape, in_place", [
    ("", (2, 7, 3, 5), False),
    ("local_size: 3 alpha: 0.5 beta: 0.6 k: 2", (3, 4, 5, 3), True),
    ("local_size: 9 alpha: 2 beta: 1.2 k: 0.5", (1, 6, 2, 3), False),   # wider than C
    ("norm_region: WITHIN_CHANNEL local_size: 3", (2, 3, 7, 6), False),
    ("norm_region: WITHIN_CHANNEL local_size: 5 alpha: 2 beta: 0.5", (2, 2, 5, 9), True),
])
def test_gpu_matches_cpu(device, fields, shape, in_place):
    check_layer_gpu(f'type: "LRN" lrn_param {{ {fields} }}', [RNG.normal(size=shape)],
                    device=device, in_place=in_place)


def test_even_local_size_fails():
    with pytest.raises(ConfnetError, match="local_size must be odd"):
        make_layer('type: "LRN" lrn_param { local_size: 4 }').setup(
            [Blob((1, 3, 2, 2))], [Blob()])
