"""LRN: local response normalization, across channels or within each channel."""

import logging

import numpy as np

from ..gpu import blas
from .base import Layer
from .registry import register_layer

ACROSS_CHANNELS, WITHIN_CHANNEL = 0, 1

log = logging.getLogger("confnet")


def window_sum(a, axes, half):
    """Sum of ``a`` over the window [i - half, i + half] along each of ``axes`` (cells outside
    the array count as 0): a box filter, one shifted add per window cell and axis."""
    for axis in axes:
        size = a.shape[axis]
        widths = [(0, 0)] * a.ndim
        widths[axis] = (half, half)
        padded = np.pad(a, widths)
        total = np.zeros_like(a)
        for start in range(2 * half + 1):
            index = [slice(None)] * a.ndim
            index[axis] = slice(start, start + size)
            total += padded[tuple(index)]
        a = total
    return a


@register_layer("LRN")
class LRN(Layer):
    """y = x * scale^-beta, with scale = k + alpha / n * sum over a window of x^2.

    ACROSS_CHANNELS: the window is local_size = n channels centred on the channel (at the same
        pixel); channels past either end count as 0. scale = k + alpha / n * sum.
    WITHIN_CHANNEL: the window is n x n pixels centred on the pixel, in the same channel,
        pixels outside the image counting as 0. Caffe builds it from an AVE pooling with
        pad (n - 1) / 2 and stride 1, whose divisor counts the padding, so it is n^2 at every
        pixel, border ones included; then a Power layer (1 + alpha * mean)^-beta with shift 1:
        scale = 1 + alpha / n^2 * sum, and k plays no part (as in Caffe).

    bottom: 1 blob (N, C, H, W).   top: 1 blob, same shape.
    backward: with B the window sum above (its own adjoint, the window being symmetric) and
        c = alpha / n (ACROSS) or alpha / n^2 (WITHIN):
        dx = dy * scale^-beta - 2 beta c x B(dy * y / scale).

    Settings: local_size (odd, default 5), alpha (1), beta (0.75), k (1; ACROSS_CHANNELS
    only), norm_region; engine does not change the result.

    On the device (``cuda/lrn.cu``) the window is a box over (channel, row, column) clipped to
    the blob, n x 1 x 1 or 1 x n x n, and both regions run the same kernels: the box sums
    (scale, and B of backward) are gathers, and the elementwise steps are separate launches,
    so the layer may run in place. scale and the backward ratio are layer-owned blobs.
    """

    params = ("lrn_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "lrn.cu"

    def layer_setup(self, bottom, top):
        p = self.param.lrn_param
        self.size, self.alpha, self.beta = p.local_size, p.alpha, p.beta
        self.require(self.size % 2 == 1, f"local_size must be odd, got {self.size}")
        self.region = p.norm_region
        if self.region == ACROSS_CHANNELS:
            self.k, self.coeff, self.axes = p.k, self.alpha / self.size, (1,)
        else:
            if p.HasField("k") and p.k != 1:
                log.warning("layer '%s' (LRN): k = %g is not used by WITHIN_CHANNEL, whose "
                            "scale is 1 + alpha * mean as in Caffe", self.name, p.k)
            self.k, self.coeff, self.axes = 1.0, self.alpha / self.size ** 2, (2, 3)
        half = (self.size - 1) // 2
        # The device box's half-widths (channels, pixels): the window of self.axes.
        self.half = (np.int32(half if self.axes == (1,) else 0),
                     np.int32(0 if self.axes == (1,) else half))
        # Device buffers: scale (kept for backward), backward's dy y / scale, and x when the
        # layer runs in place (forward overwrites it, backward needs it).
        self._scale, self._ratio, self._x = self.new_blob(), self.new_blob(), self.new_blob()

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.require(len(shape) == 4, f"needs a 4-D input (N, C, H, W), got shape {shape}")
        top[0].reshape(shape)

    def _window_sum(self, a):
        return window_sum(a, self.axes, (self.size - 1) // 2)

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        self.scale = self.k + self.coeff * self._window_sum(x * x)
        # Kept for backward: with an in-place top, x is gone by then, but x = y * scale^beta.
        self.x = x.copy() if bottom[0] is top[0] else x
        top[0].data[...] = x * self.scale ** -self.beta

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, y = top[0].diff, top[0].data
        ratio = self._window_sum(dy * y / self.scale)
        bottom[0].diff[...] = (dy * self.scale ** -self.beta
                               - 2 * self.beta * self.coeff * self.x * ratio)

    def forward_gpu(self, bottom, top):
        x, y = bottom[0], top[0]
        n, shape = x.count, tuple(np.int32(v) for v in x.shape[1:])
        self._scale.reshape(x.shape)
        if x is y:
            self._x.reshape(x.shape)
            blas.copy(n, x.gpu_data, self._x.mutable_gpu_data)
        scale = self._scale.mutable_gpu_data
        self.launch_1d("lrn_forward_scale", n, x.gpu_data, *shape, *self.half,
                       np.float32(self.k), np.float32(self.coeff), scale)
        self.launch_1d("lrn_forward", n, x.gpu_data, scale, np.float32(self.beta),
                       y.mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, y = bottom[0], top[0]
        n, shape = x.count, tuple(np.int32(v) for v in x.shape[1:])
        self._ratio.reshape(x.shape)
        ratio, scale = self._ratio.mutable_gpu_data, self._scale.gpu_data
        self.launch_1d("lrn_backward_ratio", n, y.gpu_diff, y.gpu_data, scale, ratio)
        x_data = self._x.gpu_data if x is y else x.gpu_data
        self.launch_1d("lrn_backward", n, x_data, y.gpu_diff, scale, ratio, *shape, *self.half,
                       np.float32(self.beta), np.float32(2 * self.beta * self.coeff),
                       x.mutable_gpu_diff)
