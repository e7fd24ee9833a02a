import itertools

import numpy as np
import pytest

from confnet.errors import ConfnetError
from confnet.layers import convolution
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
    split_every_loop,
)


def reference_conv(x, w, b, pad, stride, dilation, group=1):
    """y[n, m, o] = b[m] + sum over the window of output position o, one position at a time."""
    channels, outputs = x.shape[1], w.shape[0]
    kernel = w.shape[2:]
    out = tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                for size, k, p, s, d in zip(x.shape[2:], kernel, pad, stride, dilation))
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    y = np.zeros((x.shape[0], outputs) + out)
    cg, mg = channels // group, outputs // group
    for o in itertools.product(*map(range, out)):
        cells = tuple(slice(oi * s, oi * s + d * (k - 1) + 1, d)
                      for oi, s, d, k in zip(o, stride, dilation, kernel))
        patch = xp[(slice(None), slice(None)) + cells]
        for g in range(group):
            y[(slice(None), slice(g * mg, (g + 1) * mg)) + o] = np.tensordot(
                patch[:, g * cg:(g + 1) * cg], w[g * mg:(g + 1) * mg],
                axes=(list(range(1, patch.ndim)), list(range(1, w.ndim))))
    if b is not None:
        y += b.reshape((1, -1) + (1,) * len(out))
    return y


def conv_text(**settings):
    return layer_text("Convolution", "convolution_param", **settings)


def force_layout(monkeypatch, max_positions):
    """Host columns batch-last on maps below ``max_positions`` outputs, whatever the batch."""
    monkeypatch.setattr(convolution, "_BATCH_LAST_MAX_POSITIONS", max_positions)
    monkeypatch.setattr(convolution, "_BATCH_LAST_MIN_IMAGES", 1)


def check_conv(x, w, b, text, pad, stride, dilation=None, group=1):
    dilation = dilation or (1,) * (x.ndim - 2)
    params = [w] if b is None else [w, b]
    expected = reference_conv(x, w, b, pad, stride, dilation, group)
    return check_layer(text, [x], [expected], params=params)


def test_pad_stride_odd_sizes():
    x, w, b = RNG.normal(size=(2, 3, 7, 6)), RNG.normal(size=(4, 3, 3, 3)), RNG.normal(size=4)
    check_conv(x, w, b, conv_text(num_output=4, kernel_size=3, pad=1, stride=2), (1, 1), (2, 2))


def test_rectangular_kernel_with_h_w_fields():
    x, w, b = RNG.normal(size=(2, 2, 6, 9)), RNG.normal(size=(3, 2, 2, 3)), RNG.normal(size=3)
    text = conv_text(num_output=3, kernel_h=2, kernel_w=3, pad_h=1, stride_h=1, stride_w=2)
    check_conv(x, w, b, text, (1, 0), (1, 2))


def test_per_axis_repeated_values():
    x, w, b = RNG.normal(size=(1, 2, 8, 7)), RNG.normal(size=(2, 2, 3, 2)), RNG.normal(size=2)
    text = ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
            'kernel_size: 2 pad: 0 pad: 1 stride: 2 stride: 1 dilation: 1 dilation: 2 }')
    check_conv(x, w, b, text, (0, 1), (2, 1), (1, 2))


def test_dilation_group_no_bias():
    x, w = RNG.normal(size=(2, 4, 9, 8)), RNG.normal(size=(6, 2, 3, 2))
    text = conv_text(num_output=6, kernel_size=3, group=2, dilation=2, pad=1,
                     bias_term="false")
    text = text.replace("kernel_size: 3", "kernel_size: 3 kernel_size: 2")
    layer, _, _ = check_conv(x, w, None, text, (1, 1), (1, 1), (2, 2), group=2)
    assert len(layer.blobs) == 1


def test_three_spatial_axes():
    x, w, b = RNG.normal(size=(2, 2, 4, 5, 3)), RNG.normal(size=(3, 2, 2, 3, 2)), RNG.normal(size=3)
    check_conv(x, w, b, conv_text(num_output=3, kernel_size=2, pad=1, stride=2)
               .replace("kernel_size: 2", "kernel_size: 2 kernel_size: 3 kernel_size: 2"),
               (1, 1, 1), (2, 2, 2))


@pytest.mark.parametrize("shape, kernel, pad", [
    ((2, 3, 4, 5, 3), (3, 5, 1), (1, 2, 0)),   # same size: dx as a convolution of dy
    ((2, 3, 7, 6), (3, 3), (1, 1)),
    ((2, 2, 4, 5, 3), (2, 3, 2), (1, 2, 0)),   # other sizes: dx by col2im
    ((2, 3, 5, 4), (1, 1), (1, 1))])
@pytest.mark.parametrize("max_positions", [1, 10**9])
def test_stride_one_input_gradient(monkeypatch, shape, kernel, pad, max_positions):
    force_layout(monkeypatch, max_positions)
    x, b = RNG.normal(size=shape), RNG.normal(size=2)
    w = RNG.normal(size=(2, shape[1]) + kernel)
    text = conv_text(num_output=2, kernel_size=kernel[0]).replace(
        f"kernel_size: {kernel[0]}", " ".join(f"kernel_size: {k} pad: {p}"
                                               for k, p in zip(kernel, pad)))
    check_conv(x, w, b, text, pad, (1,) * len(kernel))


@pytest.mark.parametrize("max_positions", [1, 10**9])
@pytest.mark.parametrize("stride", [1, 2])
def test_host_copies_split_over_worker_threads(monkeypatch, max_positions, stride):
    # Three workers, and every copy split however small: im2col, col2im and the layout copies
    # each run as three parts in parallel, which must add up to the one-thread result.
    split_every_loop(monkeypatch)
    force_layout(monkeypatch, max_positions)
    x, w, b = RNG.normal(size=(3, 4, 7, 6)), RNG.normal(size=(4, 4, 3, 3)), RNG.normal(size=4)
    check_conv(x, w, b, conv_text(num_output=4, kernel_size=3, pad=1, stride=stride), (1, 1),
               (stride, stride))


def test_several_bottoms_share_the_weights():
    x1, x2 = RNG.normal(size=(2, 2, 5, 5)), RNG.normal(size=(2, 2, 5, 5))
    w, b = RNG.normal(size=(3, 2, 3, 3)), RNG.normal(size=3)
    want = [reference_conv(x, w, b, (0, 0), (1, 1), (1, 1)) for x in (x1, x2)]
    check_layer(conv_text(num_output=3, kernel_size=3), [x1, x2], want, params=[w, b])


def test_fillers_and_param_shapes():
    text = ('type: "Convolution" convolution_param { num_output: 6 kernel_size: 5 group: 3 '
            'weight_filler { type: "gaussian" std: 0.1 } '
            'bias_filler { type: "constant" value: 0.5 } }')
    layer, _, top = check_layer(text, [RNG.normal(size=(1, 3, 8, 8))], check_grad=False)
    assert layer.blobs[0].shape == (6, 1, 5, 5)
    assert np.all(layer.blobs[1].data == 0.5)
    assert 0 < np.std(layer.blobs[0].data) < 0.2
    assert top[0].shape == (1, 6, 4, 4)


@pytest.mark.parametrize("max_positions", [1, 10**9])
def test_chunked_batch_equals_whole_batch(monkeypatch, max_positions):
    force_layout(monkeypatch, max_positions)
    x, w, b = RNG.normal(size=(5, 2, 6, 6)), RNG.normal(size=(3, 2, 3, 3)), RNG.normal(size=3)
    # A budget of one image's buffer: five chunks, im2col rebuilt in backward.
    monkeypatch.setattr(convolution, "_COL_BUDGET", 2 * 9 * 16 * 8)
    check_conv(x, w, b, conv_text(num_output=3, kernel_size=3), (0, 0), (1, 1))


@pytest.mark.parametrize("images", [1, 3])
@pytest.mark.parametrize("max_positions", [1, 10**9])
def test_batch_first_and_batch_last_columns_agree_with_reference(monkeypatch, images,
                                                                 max_positions):
    # Maps of fewer than _BATCH_LAST_MAX_POSITIONS outputs use batch-last columns on the
    # host (with enough images); force each layout on a small map.
    x, w, b = RNG.normal(size=(images, 2, 6, 5)), RNG.normal(size=(4, 1, 3, 2)), RNG.normal(size=4)
    force_layout(monkeypatch, max_positions)
    check_conv(x, w, b, conv_text(num_output=4, kernel_h=3, kernel_w=2, pad=1, group=2),
               (1, 1), (1, 1), group=2)


@pytest.mark.parametrize("kernel, pad, stride, dilation, group, outputs", [
    ((3, 3), (2, 2), (1, 1), (2, 2), 2, 2),    # same size, fewer outputs: dx by the flipped path
    ((3, 2), (1, 0), (1, 2), (2, 2), 1, 3),    # a width stride: dx by col2im
    ((3, 3), (1, 1), (1, 1), (1, 1), 1, 6),    # same size, more outputs: still flipped
    ((4, 1), (1, 0), (1, 1), (1, 1), 1, 3)])
@pytest.mark.parametrize("stack_rows", [0, 10])
@pytest.mark.parametrize("workers", [1, 3])
def test_row_windows_agree_with_reference(monkeypatch, kernel, pad, stride, dilation, group,
                                          outputs, stack_rows, workers):
    # Batch-last 2-D columns with stride 1 along the rows keep only the windows along the
    # width (one product per kernel row, reading a slice of their rows, or one product of the
    # kernel rows stacked): dilation, groups, a width stride, and both ways of computing dx;
    # the sums of the kernel rows' products split over 1 or 3 workers.
    force_layout(monkeypatch, 10**9)
    split_every_loop(monkeypatch, workers)
    monkeypatch.setattr(convolution, "_STACK_ROWS", stack_rows)
    x = RNG.normal(size=(3, 4, 7, 6))
    w, b = RNG.normal(size=(outputs, 4 // group) + kernel), RNG.normal(size=outputs)
    text = conv_text(num_output=outputs, kernel_h=kernel[0], kernel_w=kernel[1], pad_h=pad[0],
                     pad_w=pad[1], stride_h=stride[0], stride_w=stride[1],
                     dilation=dilation[0], group=group)
    layer, _, _ = check_conv(x, w, b, text, pad, stride, dilation, group)
    assert layer._rows


def test_float32_stays_float32():
    text = conv_text(num_output=4, kernel_size=3, pad=1)
    layer = make_layer(text, dtype=np.float32)
    x = RNG.normal(size=(2, 3, 6, 6))
    bottom, top = make_blobs([x], np.float32), make_blobs([np.zeros(0)], np.float32)
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = RNG.normal(size=layer.blobs[0].shape)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert top[0].data.dtype == bottom[0].diff.dtype == layer.blobs[0].diff.dtype == np.float32
    want = reference_conv(x, layer.blobs[0].data.astype(np.float64), np.zeros(4),
                          (1, 1), (1, 1), (1, 1))
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("settings, message", [
    ("num_output: 2 kernel_size: 3 axis: 2", "axis: 2 is not supported"),
    ("num_output: 2", "kernel_size must be set"),
    ("kernel_size: 3", "num_output must be set"),
    ("num_output: 3 kernel_size: 3 group: 2", "group 2 must divide"),
    ("num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3", "either kernel_size or"),
    ("num_output: 2 kernel_h: 3", "kernel_h and kernel_w must be set together"),
    ("num_output: 2 kernel_size: 3 kernel_size: 3 kernel_size: 3", "needs 1 or 2 values"),
    ("num_output: 2 kernel_size: 3 stride: 0", "stride must be positive"),
    ("num_output: 2 kernel_size: 9", "larger than the padded input"),
])
def test_bad_settings_fail_clearly(settings, message):
    layer = make_layer(f'type: "Convolution" convolution_param {{ {settings} }}')
    with pytest.raises(ConfnetError, match=message):
        layer.setup(make_blobs([np.zeros((1, 2, 5, 5))]), make_blobs([np.zeros(0)]))


def test_input_channels_must_not_change():
    layer = make_layer(conv_text(num_output=2, kernel_size=3))
    top = make_blobs([np.zeros(0)])
    layer.setup(make_blobs([np.zeros((1, 2, 5, 5))]), top)
    with pytest.raises(ConfnetError, match="input has 3 channels"):
        layer.reshape(make_blobs([np.zeros((1, 3, 5, 5))]), top)


# -- the device path: GPU kernels against the CPU path in float32 ----------------------------
FILLED = {"weight_filler": '{ type: "gaussian" }', "bias_filler": '{ type: "gaussian" }'}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, shape", [
    ({"num_output": 4, "kernel_size": 3, "pad": 1, "stride": 2}, (2, 3, 7, 6)),
    ({"num_output": 3, "kernel_h": 2, "kernel_w": 3, "pad_h": 1, "stride_h": 1,
      "stride_w": 2}, (2, 2, 6, 9)),
    ({"num_output": 6, "kernel_size": 3, "group": 2, "dilation": 2, "pad": 1,
      "bias_term": "false"}, (2, 4, 9, 8)),
    ({"num_output": 5, "kernel_size": 5}, (3, 1, 12, 11)),   # LeNet's conv1 shape, smaller
])
def test_gpu_matches_cpu(device, settings, shape):
    check_layer_gpu(conv_text(**settings, **FILLED), [RNG.normal(size=shape)], device=device,
                    rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_several_bottoms_test_phase_and_one_spatial_axis(device):
    from confnet.layers import TEST
    x1, x2 = RNG.normal(size=(2, 2, 5, 6)), RNG.normal(size=(2, 2, 5, 6))
    text = conv_text(num_output=3, kernel_size=3, pad=1, **FILLED)
    check_layer_gpu(text, [x1, x2], num_top=2, device=device, rtol=2e-5, atol=2e-5)
    # TEST phase: columns are not kept for backward, so backward rebuilds them.
    check_layer_gpu(text, [x1], phase=TEST, device=device, rtol=2e-5, atol=2e-5)
    # 1-D: runs as 2-D of height 1.
    check_layer_gpu(conv_text(num_output=2, kernel_size=3, stride=2, pad=1, **FILLED),
                    [RNG.normal(size=(2, 3, 11))], device=device, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_chunked_batch(device, monkeypatch):
    # A budget of about one image's column buffer: the batch runs in chunks, columns rebuilt in
    # backward into the shared column blob.
    monkeypatch.setattr(convolution, "_COL_BUDGET", 2 * 9 * 16 * 4)
    check_layer_gpu(conv_text(num_output=3, kernel_size=3, **FILLED),
                    [RNG.normal(size=(3, 2, 6, 6))], device=device, rtol=2e-5, atol=2e-5)


def test_columns_live_in_layer_owned_blobs():
    layer = make_layer(conv_text(num_output=2, kernel_size=3), dtype=np.float32)
    bottom, top = make_blobs([RNG.normal(size=(2, 3, 6, 5))], np.float32), make_blobs([[0]])
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    (col,) = layer._col_blobs
    assert col.shape == (3, 3, 3, 2, 4, 3)   # (C, kh, kw, N, *out)
    first = col.cpu_data.__array_interface__["data"][0]
    layer.forward(bottom, top)                # reused, not reallocated
    assert col.cpu_data.__array_interface__["data"][0] == first


def test_only_one_and_two_spatial_axes_have_a_device_path():
    def layer(shape, layer_type="Convolution"):
        text = layer_text(layer_type, "convolution_param", num_output=2, kernel_size=2)
        made = make_layer(text, dtype=np.float32)
        made.setup(make_blobs([np.zeros(shape)], np.float32), make_blobs([[0]], np.float32))
        return made
    assert layer((1, 2, 5)).has_gpu and layer((1, 2, 5, 4)).has_gpu
    assert not layer((1, 2, 5, 4, 3)).has_gpu
    assert layer((1, 2, 5, 4), "Deconvolution").has_gpu
    assert not layer((1, 2, 5, 4, 3), "Deconvolution").has_gpu


# -- the device's implicit-GEMM and 1x1 paths --------------------------------------------------
def force_implicit(monkeypatch, dx_max_stride=1):
    """Every layer on the implicit path (the rule would keep these small ones on im2col); the
    implicit data gradient up to ``dx_max_stride``."""
    monkeypatch.setattr(convolution, "_IMPLICIT_MIN_TILES", 0)
    monkeypatch.setattr(convolution, "_IMPLICIT_DX_MAX_STRIDE", dx_max_stride)


IMPLICIT_CASES = [   # odd sizes; pad, stride, dilation, groups, non-square kernels
    ({"num_output": 5, "kernel_size": 3, "pad": 1}, (3, 3, 7, 6)),
    ({"num_output": 4, "kernel_h": 3, "kernel_w": 2, "pad_h": 2, "pad_w": 1, "stride_h": 2,
      "stride_w": 3}, (1, 2, 9, 11)),
    ({"num_output": 6, "kernel_h": 2, "kernel_w": 3, "group": 3, "dilation": 2, "pad": 1},
     (3, 9, 8, 7)),
    ({"num_output": 70, "kernel_size": 3, "stride": 2, "group": 2, "bias_term": "false"},
     (1, 34, 9, 9)),   # more than a 64-row tile of outputs, and of depth (17 x 9)
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dx_max_stride", [1, 3], ids=["column-dx", "implicit-dx"])
@pytest.mark.parametrize("settings, shape", IMPLICIT_CASES)
def test_gpu_implicit_gemm(device, settings, shape, dx_max_stride, monkeypatch):
    # Forward, dW and (for stride 1, or every stride with dx_max_stride 3) dx without columns;
    # strided layers otherwise take dx through the column gradient.
    force_implicit(monkeypatch, dx_max_stride)
    check_layer_gpu(conv_text(**settings, **FILLED), [RNG.normal(size=shape)], device=device,
                    rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_implicit_weight_gradient_split_over_the_batch(device, monkeypatch):
    # Slices of 16 columns: 3 images x 42 positions give 8 partial sums, added by the second
    # kernel; the last slice is short.
    force_implicit(monkeypatch)
    monkeypatch.setattr(convolution, "_DW_MIN_SLICE", 16)
    check_layer_gpu(conv_text(num_output=3, kernel_size=3, pad=1, **FILLED),
                    [RNG.normal(size=(3, 2, 7, 6))], device=device, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, shape", [
    ({"num_output": 6, "kernel_size": 1, "group": 3}, (3, 9, 5, 7)),
    ({"num_output": 5, "kernel_size": 1, "bias_term": "false"}, (1, 3, 4, 3)),
    ({"num_output": 4, "kernel_size": 1, "group": 2}, (3, 2, 9)),   # 1-D
])
def test_gpu_one_by_one_as_plain_gemm(device, settings, shape):
    check_layer_gpu(conv_text(**settings, **FILLED), [RNG.normal(size=shape)], device=device,
                    rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_implicit_several_bottoms_and_test_phase(device, monkeypatch):
    from confnet.layers import TEST
    force_implicit(monkeypatch)
    x1, x2 = RNG.normal(size=(2, 2, 5, 6)), RNG.normal(size=(2, 2, 5, 6))
    text = conv_text(num_output=3, kernel_size=3, pad=1, **FILLED)
    check_layer_gpu(text, [x1, x2], num_top=2, device=device, rtol=2e-5, atol=2e-5)
    check_layer_gpu(text, [x1], phase=TEST, device=device, rtol=2e-5, atol=2e-5)


def test_device_path_rule(monkeypatch):
    from confnet.gpu import blas

    def path(settings, shape):
        layer = make_layer(conv_text(**settings), dtype=np.float32)
        layer.setup(make_blobs([np.zeros(shape)], np.float32), make_blobs([[0]], np.float32))
        return layer._device_path(shape[0])
    assert path({"num_output": 8, "kernel_size": 1}, (2, 4, 5, 5)) == "1x1"
    assert path({"num_output": 8, "kernel_size": 1, "stride": 2}, (2, 4, 5, 5)) == "im2col"
    assert path({"num_output": 8, "kernel_size": 3}, (2, 4, 6, 6)) == "im2col"   # 1 tile
    # 64 outputs x 16 images of 12 x 12 positions: 36 tiles of 64x64, at least GEMM_SMS / 4.
    big = ({"num_output": 64, "kernel_size": 3, "pad": 1}, (16, 3, 12, 12))
    assert path(*big) == "implicit"
    monkeypatch.setattr(blas, "_tf32", True)
    assert path(*big) == "im2col"
    # ... unless the batch's columns (3 x 9 x 144 x 16 floats) exceed the budget.
    monkeypatch.setattr(convolution, "_COL_BUDGET", 3 * 9 * 144 * 16 * 4 - 1)
    assert path(*big) == "implicit"
