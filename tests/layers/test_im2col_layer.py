import itertools

import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    make_blobs,
    make_layer,
)


def reference_im2col(x, kernel, pad, stride, dilation):
    """Caffe's loops for (N, C, *spatial): row (c, k) of the column of output position o holds
    the input cell o * s - pad + k * d, or 0 where that cell is outside the input."""
    n, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    out = tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                for size, k, p, s, d in zip(spatial, kernel, pad, stride, dilation))
    y = np.zeros((n, channels * int(np.prod(kernel))) + out)
    for c, k in itertools.product(range(channels), itertools.product(*map(range, kernel))):
        row = c * int(np.prod(kernel)) + int(np.ravel_multi_index(k, kernel))
        for o in itertools.product(*map(range, out)):
            cell = tuple(oi * s - p + ki * d
                         for oi, ki, s, p, d in zip(o, k, stride, pad, dilation))
            if all(0 <= ci < size for ci, size in zip(cell, spatial)):
                y[(slice(None), row) + o] = x[(slice(None), c) + cell]
    return y


def im2col_text(fields):
    return f'type: "Im2col" convolution_param {{ {fields} }}'


@pytest.mark.parametrize("shape, fields, kernel, pad, stride, dilation", [
    ((2, 3, 6, 5), "kernel_size: 3 pad: 1 stride: 2", (3, 3), (1, 1), (2, 2), (1, 1)),
    ((1, 2, 7, 6), "kernel_h: 2 kernel_w: 3 pad_h: 1 stride_h: 1 stride_w: 2", (2, 3), (1, 0), (1, 2),
     (1, 1)),
    ((2, 2, 7, 7), "kernel_size: 2 dilation: 3 pad: 2", (2, 2), (2, 2), (1, 1), (3, 3)),
    ((1, 2, 4, 3, 5), ("kernel_size: 2 kernel_size: 2 kernel_size: 3 "
                       "stride: 2 stride: 1 stride: 2 pad: 1"),
     (2, 2, 3), (1, 1, 1), (2, 1, 2), (1, 1, 1)),
])
def test_im2col(shape, fields, kernel, pad, stride, dilation):
    x = RNG.normal(size=shape)
    check_layer(im2col_text(fields), [x], [reference_im2col(x, kernel, pad, stride, dilation)])


def test_channel_axis_two_merges_the_lead_axes():
    x = RNG.normal(size=(2, 3, 2, 5, 4))
    want = reference_im2col(x.reshape(6, 2, 5, 4), (2, 2), (0, 0), (1, 1), (1, 1))
    check_layer(im2col_text("kernel_size: 2 axis: 2"), [x], [want.reshape(2, 3, 8, 4, 3)])


def test_backward_sums_overlapping_windows():
    layer, bottom, top = check_layer(im2col_text("kernel_size: 3 pad: 1"),
                                     [RNG.normal(size=(1, 1, 4, 4))], check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    # Each cell is read once per window that covers it: 4 at the corners, 9 inside.
    assert bottom[0].diff[0, 0, 0, 0] == 4 and bottom[0].diff[0, 0, 1, 1] == 9


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, fields", [
    ((2, 3, 7, 6), "kernel_size: 3 pad: 1 stride: 2"),
    ((1, 2, 7, 9), "kernel_h: 2 kernel_w: 3 pad_h: 1 stride_h: 1 stride_w: 2"),
    ((2, 2, 7, 7), "kernel_size: 2 dilation: 3 pad: 2"),
    ((2, 3, 2, 5, 4), "kernel_size: 2 axis: 2"),             # lead axes merged into the batch
    ((3, 2, 11), "kernel_size: 3 stride: 2 pad: 1"),         # 1-D: height 1
])
def test_gpu_matches_cpu(device, shape, fields):
    check_layer_gpu(im2col_text(fields), [RNG.normal(size=shape)], device=device)


def test_three_spatial_axes_keep_the_host_path():
    def layer(shape):
        made = make_layer(im2col_text("kernel_size: 2"), dtype=np.float32)
        made.setup(make_blobs([np.zeros(shape)], np.float32), make_blobs([[0]], np.float32))
        return made
    assert layer((1, 2, 5)).has_gpu and layer((1, 2, 5, 4)).has_gpu
    assert not layer((1, 2, 4, 3, 5)).has_gpu


@pytest.mark.parametrize("fields, shape, message", [
    ("pad: 1", (1, 2, 5, 5), "kernel_size must be set"),
    ("kernel_size: 7", (1, 2, 5, 5), "larger than the padded input"),
    ("kernel_size: 2 stride: 0", (1, 2, 5, 5), "stride must be positive"),
    ("kernel_size: 2 axis: 3", (1, 2, 5, 5), "at least one spatial axis"),
])
def test_bad_settings_fail_clearly(fields, shape, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(im2col_text(fields)).setup(make_blobs([np.zeros(shape)]),
                                              make_blobs([np.zeros(0)]))
