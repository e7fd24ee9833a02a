import numpy as np
import pytest

from confnet.errors import ConfnetError
from confnet.layers import pooling
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    make_blobs,
    make_layer,
    split_every_loop,
)


def distinct(shape, scale=0.1, shift=0.0):
    """Values with no ties, far apart compared with the gradient check's step."""
    return RNG.permutation(int(np.prod(shape))).reshape(shape) * scale + shift


def reference_pool(x, method, kernel, stride, pad, out):
    """Caffe's loops over output positions; ``out`` is the expected (PH, PW), given by hand."""
    height, width = x.shape[2:]
    y = np.zeros(x.shape[:2] + out)
    mask = np.zeros_like(y)
    for i in range(out[0]):
        for j in range(out[1]):
            h0, w0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
            h1, w1 = min(h0 + kernel[0], height + pad[0]), min(w0 + kernel[1], width + pad[1])
            pool_size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, height), min(w1, width)
            cells = x[:, :, h0:h1, w0:w1]
            if method == "MAX":
                y[:, :, i, j] = cells.max(axis=(2, 3))
                arg = cells.reshape(x.shape[:2] + (-1,)).argmax(axis=2)
                mask[:, :, i, j] = (h0 + arg // (w1 - w0)) * width + w0 + arg % (w1 - w0)
            else:
                y[:, :, i, j] = cells.sum(axis=(2, 3)) / pool_size
    return y, mask


def pool_text(method, fields):
    return f'type: "Pooling" pooling_param {{ pool: {method} {fields} }}'


# (shape, settings, kernel, stride, pad, pooled size), the last three given by hand.
GEOMETRIES = [
    # LeNet: 2 x 2, stride 2, no overhang.
    ((2, 3, 8, 6), "kernel_size: 2 stride: 2", (2, 2), (2, 2), (0, 0), (4, 3)),
    # Ceil rounding: the last 3-wide window starts at 4 of 6 and hangs over by one.
    ((2, 2, 6, 7), "kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0), (3, 3)),
    # Overlapping windows with padding: ceil((7 + 2 - 3) / 2) + 1 = 4.
    ((1, 2, 7, 7), "kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), (4, 4)),
    # Padding drops the last window: ceil((5 + 2 - 2) / 2) + 1 = 4, but 3 * 2 >= 5 + 1.
    ((2, 2, 5, 5), "kernel_size: 2 stride: 2 pad: 1", (2, 2), (2, 2), (1, 1), (3, 3)),
    # Rectangular everything.
    ((1, 3, 9, 8), "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0",
     (3, 2), (2, 1), (1, 0), (5, 7)),
]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, settings, kernel, stride, pad, out", GEOMETRIES)
def test_pool(method, shape, settings, kernel, stride, pad, out):
    # All negative: a MAX that let a padded cell (0) win would fail.
    x = distinct(shape, shift=-1000.0)
    y, mask = reference_pool(x, method, kernel, stride, pad, out)
    check_layer(pool_text(method, settings), [x], [y])
    if method == "MAX":
        check_layer(pool_text(method, settings), [x], [y, mask])


@pytest.mark.parametrize("shape, settings, kernel, stride, pad, out", GEOMETRIES)
def test_ave_rows_one_product_per_plane(monkeypatch, shape, settings, kernel, stride, pad, out):
    # Above _AVE_KRON_MAX_OUT pooled columns, AVE sums the rows with one small product per plane
    # instead of one product with kron(A_h^T, I).
    monkeypatch.setattr(pooling, "_AVE_KRON_MAX_OUT", 0)
    x = distinct(shape, shift=-1000.0)
    check_layer(pool_text("AVE", settings), [x], [reference_pool(x, "AVE", kernel, stride, pad,
                                                                 out)[0]])


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_other_code_paths_agree_with_reference(monkeypatch, method, workers):
    # Average pooling uses matrix products on maps up to _AVE_MATRIX_MAX_SIZE and window sums
    # above it; max pooling works in batch chunks of _CHUNK_BYTES (one plane each here), shared
    # out over the workers. Force the other paths.
    monkeypatch.setattr(pooling, "_AVE_MATRIX_MAX_SIZE", 0)
    monkeypatch.setattr(pooling, "_CHUNK_BYTES", 1)
    split_every_loop(monkeypatch, workers)
    x = distinct((3, 2, 7, 7), shift=-1000.0)
    y, mask = reference_pool(x, method, (3, 3), (2, 2), (1, 1), (4, 4))
    text = pool_text(method, "kernel_size: 3 stride: 2 pad: 1")
    check_layer(text, [x], [y, mask] if method == "MAX" else [y])


def test_floor_rounding_drops_the_overhanging_window():
    x = distinct((2, 2, 6, 7))
    y, _ = reference_pool(x, "AVE", (3, 3), (2, 2), (0, 0), (2, 3))
    check_layer(pool_text("AVE", "kernel_size: 3 stride: 2 round_mode: FLOOR"), [x], [y])


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(method):
    x = distinct((2, 3, 5, 4))
    y, _ = reference_pool(x, method, (5, 4), (1, 1), (0, 0), (1, 1))
    check_layer(pool_text(method, "global_pooling: true"), [x], [y])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("settings", [g[1] for g in GEOMETRIES] + ["global_pooling: true"])
def test_pool_gpu(device, method, settings):
    # Odd sizes: 2 x 3 planes of 9 x 7; MAX also returns its argmax mask as a second top.
    x = distinct((2, 3, 9, 7), shift=-5.0)
    check_layer_gpu(pool_text(method, settings), [x], device=device,
                    num_top=2 if method == "MAX" else 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings",
                         ["kernel_size: 3 stride: 2 pad: 1", "kernel_size: 3 stride: 1"])
@pytest.mark.parametrize("seed", [3, 4])
def test_max_ties_gpu(device, settings, seed):
    # Ties everywhere (a 0/1 grid): the device must pick the same (first) winner as the CPU,
    # and a cell that wins several windows (up to 9 with stride 1) must sum their gradients
    # in the same order, to the bit.
    x = (np.random.default_rng(seed).random((2, 3, 7, 8)) < 0.5).astype(float)
    check_layer_gpu(pool_text("MAX", settings), [x], device=device, num_top=2, rtol=0, atol=0)


def test_max_ties_go_to_the_first_cell():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, :] = 1.0                      # every window ties between its two bottom cells
    layer, bottom, top = check_layer(pool_text("MAX", "kernel_size: 2 stride: 2"), [x],
                                     [np.ones((1, 1, 1, 2)), [[[[4.0, 6.0]]]]], check_grad=False)
    top[0].diff[...] = [[[[1.0, 2.0]]]]
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff[0, 0], [[0, 0, 0, 0], [1, 0, 2, 0]])


@pytest.mark.parametrize("settings, kernel, stride, pad, out", [
    ("kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), (4, 5)),
    ("kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2", (2, 3), (1, 2), (0, 0), (6, 4))])
def test_max_ties_in_overlapping_windows_go_to_the_first_cell(settings, kernel, stride, pad, out):
    # A 0/1 grid: most windows tie. The winner is the first maximum in row-major window order
    # (Caffe's), and the gradient goes to it alone.
    x = (RNG.random((2, 3, 7, 8)) < 0.5).astype(float)
    y, mask = reference_pool(x, "MAX", kernel, stride, pad, out)
    layer, bottom, top = check_layer(pool_text("MAX", settings), [x], [y, mask],
                                     check_grad=False)
    dy = RNG.normal(size=y.shape)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    expected = np.zeros(x.shape)
    flat = expected.reshape(x.shape[:2] + (-1,))
    for n, c in np.ndindex(*x.shape[:2]):
        np.add.at(flat[n, c], mask[n, c].astype(int).ravel(), dy[n, c].ravel())
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-12)


def test_float32_stays_float32():
    for method in ("MAX", "AVE"):
        layer = make_layer(pool_text(method, "kernel_size: 3 stride: 2 pad: 1"), dtype=np.float32)
        x = distinct((2, 3, 7, 7))
        bottom, top = make_blobs([x], np.float32), make_blobs([np.zeros(0)], np.float32)
        layer.setup(bottom, top)
        layer.forward(bottom, top)
        top[0].diff[...] = 1
        layer.backward(top, [True], bottom)
        assert top[0].data.dtype == bottom[0].diff.dtype == np.float32
        want, _ = reference_pool(x, method, (3, 3), (2, 2), (1, 1), (4, 4))
        np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("text, n_top, message", [
    (pool_text("STOCHASTIC", "kernel_size: 2"), 1, "STOCHASTIC is not supported"),
    (pool_text("AVE", "kernel_size: 2"), 2, "second top .* needs pool: MAX"),
    (pool_text("MAX", "kernel_size: 2 kernel_h: 2 kernel_w: 2"), 1, "either kernel_size or both"),
    (pool_text("MAX", "kernel_h: 2"), 1, "either kernel_size or both"),
    (pool_text("MAX", "stride: 2"), 1, "kernel_size .* must be set"),
    (pool_text("MAX", "global_pooling: true kernel_size: 2"), 1, "do not set a kernel size"),
    (pool_text("MAX", "global_pooling: true stride: 2"), 1, "no pad and no stride"),
    (pool_text("MAX", "kernel_size: 2 pad: 2"), 1, "must be smaller than the kernel"),
    (pool_text("MAX", "kernel_size: 9"), 1, "larger than the padded input"),
    (pool_text("MAX", "kernel_size: 1 stride: 3"), 1, "starts past its end"),
])
def test_bad_settings_fail_clearly(text, n_top, message):
    layer = make_layer(text)
    with pytest.raises(ConfnetError, match=message):
        layer.setup(make_blobs([np.zeros((1, 2, 5, 5))]), make_blobs([np.zeros(0)] * n_top))


def test_needs_a_4d_input():
    layer = make_layer(pool_text("MAX", "kernel_size: 2"))
    with pytest.raises(ConfnetError, match="needs a 4-D input"):
        layer.setup(make_blobs([np.zeros((1, 2, 5))]), make_blobs([np.zeros(0)]))
