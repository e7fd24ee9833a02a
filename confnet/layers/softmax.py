"""Softmax along one axis, and the helpers SoftmaxWithLoss shares."""

import numpy as np

from ..gpu.launch import blocks_for
from .base import Layer
from .registry import register_layer


def split_at_axis(blob, axis):
    """(outer, channels, inner): the blob's shape seen as three dimensions around ``axis``."""
    return blob.count_range(0, axis), blob.shape[axis], blob.count_range(axis + 1)


def softmax(x):
    """Softmax over axis 1 of a 3-D array, shifted by the maximum so exp never overflows."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(y, dy):
    """dx for y = softmax(x) over axis 1: (dy - sum_c dy * y) * y."""
    return (dy - (dy * y).sum(axis=1, keepdims=True)) * y


# The *_rows kernels (inner == 1) give each row one warp: 8 rows per block of 256 threads.
_ROWS_PER_BLOCK = 8


def _launch_softmax(layer, kernel, dims, *pointers):
    """``kernel`` (or its one-warp-per-row variant when inner == 1) of cuda/softmax.cu over the
    (outer, channels, inner) positions of ``dims``."""
    outer, channels, inner = dims
    if inner == 1:
        layer.launch(f"{kernel}_rows", blocks_for(outer, _ROWS_PER_BLOCK), 32 * _ROWS_PER_BLOCK,
                     np.int32(outer), *pointers, np.int32(channels))
    else:
        layer.launch_1d(kernel, outer * inner, *pointers, np.int32(channels), np.int32(inner))


def softmax_gpu(layer, dims, x, y):
    """y = softmax(x) on the device, over the channels of ``dims`` = (outer, channels, inner)."""
    _launch_softmax(layer, "softmax_forward", dims, x, y)


def softmax_backward_gpu(layer, dims, y, dy, dx):
    """dx = (dy - sum_c dy * y) * y on the device (dx may be dy)."""
    _launch_softmax(layer, "softmax_backward", dims, y, dy, dx)


@register_layer("Softmax")
class Softmax(Layer):
    """y[.., c, ..] = exp(x[.., c, ..]) / sum_k exp(x[.., k, ..]), over softmax_param.axis.

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = (dy - sum_c(dy * y)) * y, the sum over the softmax axis.
    """

    params = ("softmax_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "softmax.cu"

    def reshape(self, bottom, top):
        self.axis = bottom[0].canonical_axis(self.param.softmax_param.axis)
        self.dims = split_at_axis(bottom[0], self.axis)
        top[0].reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        y = softmax(bottom[0].data.reshape(self.dims))
        top[0].data[...] = y.reshape(top[0].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = softmax_backward(top[0].data.reshape(self.dims), top[0].diff.reshape(self.dims))
            bottom[0].diff[...] = dx.reshape(bottom[0].shape)

    def forward_gpu(self, bottom, top):
        softmax_gpu(self, self.dims, bottom[0].gpu_data, top[0].mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            softmax_backward_gpu(self, self.dims, top[0].gpu_data, top[0].gpu_diff,
                                 bottom[0].mutable_gpu_diff)
