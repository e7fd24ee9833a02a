"""LRN: local response normalization, across channels or within each channel."""

import logging

import numpy as np

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
    """

    params = ("lrn_param",)
    num_bottom = num_top = 1

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
