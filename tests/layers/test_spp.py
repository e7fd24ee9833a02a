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


def distinct(shape):
    """No ties, values far apart compared with the gradient check's step."""
    return RNG.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 50.0


def reference_level(x, bins, method):
    """Caffe's SPP window for the level (kernel = stride = ceil(size / bins), pad = (kernel *
    bins - size + 1) / 2), then Caffe's pooling loops, output sizes and AVE divisor included."""
    height, width = x.shape[2:]
    geometry = []
    for size in (height, width):
        kernel = int(np.ceil(size / bins))
        pad = (kernel * bins - size + 1) // 2
        pooled = int(np.ceil((size + 2 * pad - kernel) / kernel)) + 1
        if pad and (pooled - 1) * kernel >= size + pad:
            pooled -= 1
        geometry.append((kernel, pad, pooled))
    (kh, ph, oh), (kw, pw, ow) = geometry
    y = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * kh - ph, j * kw - pw
            h1, w1 = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
            pool_size = (h1 - h0) * (w1 - w0)
            cells = x[:, :, max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)]
            if method == "MAX":
                y[:, :, i, j] = cells.max(axis=(2, 3))
            else:
                y[:, :, i, j] = cells.sum(axis=(2, 3)) / pool_size
    return y


def reference_spp(x, height, method):
    if height == 1:
        return reference_level(x, 1, method)
    return np.concatenate([reference_level(x, 2 ** i, method).reshape(x.shape[0], -1)
                           for i in range(height)], axis=1)


def spp_text(height, method):
    return f'type: "SPP" spp_param {{ pyramid_height: {height} pool: {method} }}'


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, height, width", [
    ((2, 3, 9, 8), 3, 3 * (1 + 4 + 16)),   # 9 rows in 4 bins: kernel 3, pad 2
    ((1, 2, 12, 7), 2, 2 * (1 + 4)),
    ((2, 2, 5, 6), 1, None),               # one level: Caffe's 4-D pooling top
])
def test_spp(method, shape, height, width):
    x = distinct(shape)
    want = reference_spp(x, height, method)
    assert want.shape == ((shape[0], width) if width else shape[:2] + (1, 1))
    check_layer(spp_text(height, method), [x], [want])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, height", [((2, 3, 9, 7), 3), ((1, 2, 5, 11), 2),
                                           ((2, 2, 5, 6), 1)])
def test_gpu_matches_cpu(device, method, shape, height):
    check_layer_gpu(spp_text(height, method), [RNG.normal(size=shape)], device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_new_input_size_rebuilds_the_levels(device):
    device_backend(device)
    x = distinct((1, 2, 11, 6))
    with running_on(device) as backend:
        layer = make_layer(spp_text(2, "MAX"), dtype=np.float32)
        bottom, top = make_blobs([distinct((1, 2, 8, 8))], np.float32), [Blob((), np.float32)]
        layer.setup(bottom, top)
        layer.forward(bottom, top)
        bottom = make_blobs([x], np.float32)
        layer.reshape(bottom, top)
        backend.copies.reset()
        layer.forward(bottom, top)
        assert backend.copies.dtoh == 0
        got = top[0].cpu_data.copy()
    np.testing.assert_array_equal(got, reference_spp(x.astype(np.float32), 2, "MAX"))


def test_new_input_size_rebuilds_the_levels():
    layer, _, top = check_layer(spp_text(2, "MAX"), [distinct((1, 2, 8, 8))], check_grad=False)
    x = distinct((1, 2, 11, 6))
    bottom = make_blobs([x])
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, reference_spp(x, 2, "MAX"))


@pytest.mark.parametrize("text, shape, message", [
    (spp_text(3, "STOCHASTIC"), (1, 1, 8, 8), "STOCHASTIC is not supported"),
    ('type: "SPP" spp_param { pool: MAX }', (1, 1, 8, 8), "pyramid_height must be set"),
    # 5 rows in 4 bins: kernel 2, pad 2, which Caffe's pooling refuses.
    (spp_text(3, "MAX"), (1, 1, 5, 8), "too small for level 2"),
])
def test_bad_settings_fail_clearly(text, shape, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(text).setup([Blob(shape)], [Blob()])
