"""Im2col: the layer that exposes im2col, every convolution window laid out as channels."""

import numpy as np

from .base import Layer
from .convolution import Convolution
from .im2col import col2im, im2col, output_shape
from .registry import register_layer


@register_layer("Im2col")
class Im2col(Layer):
    """y[n, (c, k), o] = xpad[n, c, o * s + k * d]

    with o and k multi-indices over the spatial axes (output position and kernel offset), xpad
    the input zero-padded by ``pad`` on both sides, s the stride and d the dilation; the row
    index (c, k_1, .., k_n) is flattened in that order, as Caffe's im2col lays a column out.

    bottom: 1 blob (*lead, C, *spatial) with the channels on ``axis`` (default 1; 2-D:
            (N, C, H, W)); every axis before it is a batch axis.
    top: 1 blob (*lead, C * prod(kernel), *out) with, per spatial axis,
         out = (size + 2 pad - (dilation (kernel - 1) + 1)) // stride + 1.
    backward: dx = col2im(dy): every entry of dy is added back to the input cell it was read
         from (overlapping windows sum; entries read from the padding are dropped).

    Settings (convolution_param): kernel_size / stride / pad / dilation (one value for every
    axis or one per axis; kernel_h/_w, stride_h/_w, pad_h/_w in 2-D), read as Convolution reads
    them; axis; force_nd_im2col and engine do not change the result. num_output, group,
    bias_term and the fillers play no part, as in Caffe.

    On the device (1-D and 2-D; with more spatial axes the layer runs its host path) the
    convolution family's kernels ``im2col_forward``/``im2col_backward`` (``cuda/convolution.cu``)
    write the top in this layout directly and gather dx per input cell, without atomics.
    """

    params = ("convolution_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "convolution.cu"

    # The geometry parsing Convolution uses, and its kernel arguments (1-D as 2-D of height 1).
    read_geometry, _per_axis = Convolution.read_geometry, Convolution._per_axis
    _geometry_2d = Convolution._geometry_2d

    def layer_setup(self, bottom, top):
        p = self.param.convolution_param
        self.axis = bottom[0].canonical_axis(p.axis)
        n = bottom[0].num_axes - self.axis - 1
        self.require(n >= 1, f"needs at least one spatial axis after the channel axis "
                             f"{self.axis}, got input shape {bottom[0].shape}")
        self.read_geometry(p, n)
        self.has_gpu = type(self).has_gpu and n <= 2

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.require(len(shape) == self.axis + 1 + len(self.kernel),
                     f"was set up for {len(self.kernel)} spatial axes after axis {self.axis}, "
                     f"got input shape {shape}")
        self.require(bottom[0] is not top[0], "cannot be computed in place")
        self.lead, channels, spatial = shape[:self.axis], shape[self.axis], shape[self.axis + 1:]
        self.out = output_shape(spatial, self.kernel, self.pad, self.stride, self.dilation)
        self.require(all(o > 0 for o in self.out),
                     f"kernel {self.kernel} (dilation {self.dilation}) is larger than the "
                     f"padded input {spatial} (pad {self.pad})")
        # The batched layout im2col/col2im work on: (N, C, *spatial), N the lead axes merged.
        self.batched = (int(np.prod(self.lead, dtype=np.int64)), channels) + spatial
        top[0].reshape(self.lead + (channels * int(np.prod(self.kernel)),) + self.out)

    def _col_order(self):
        """Axis order taking (C, *kernel, N, *out) to (N, C, *kernel, *out); its own inverse
        is argsort."""
        n = len(self.kernel)
        return (n + 1, 0, *range(1, n + 1), *range(n + 2, 2 * n + 2))

    def forward_cpu(self, bottom, top):
        col = im2col(bottom[0].data.reshape(self.batched), self.kernel, self.pad, self.stride,
                     self.dilation)
        top[0].data[...] = col.transpose(self._col_order()).reshape(top[0].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        col_shape = (self.batched[:2] + self.kernel + self.out)
        dcol = top[0].diff.reshape(col_shape).transpose(np.argsort(self._col_order()))
        col2im(dcol, bottom[0].diff.reshape(self.batched), self.kernel, self.pad, self.stride,
               self.dilation)

    def forward_gpu(self, bottom, top):
        windows = top[0].count // int(np.prod(self.kernel))   # one thread per (n, c, o)
        self.launch_1d("im2col_forward", windows, bottom[0].gpu_data,
                       *self._geometry_2d(self.batched[2:]), top[0].mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.launch_1d("im2col_backward", bottom[0].count, top[0].gpu_diff,
                           *self._geometry_2d(self.batched[2:]), bottom[0].mutable_gpu_diff)
