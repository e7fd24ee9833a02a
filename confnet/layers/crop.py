"""Crop: cut bottom[0] down to bottom[1]'s shape from ``axis`` on."""

import numpy as np

from .base import Layer
from .registry import register_layer


@register_layer("Crop")
class Crop(Layer):
    """y[i_0, .., i_n] = x[i_0 + o_0, .., i_n + o_n], with o_j = 0 for the axes before ``axis``
    and, from ``axis`` on, the offset given for that axis (one value for all of them, one per
    cropped axis, or none: 0).

    bottom: 2 blobs: x (d_0, .., d_n), and a reference whose shape gives the size of every
            axis from ``axis`` on (only its shape is read).
    top: 1 blob: x's shape up to ``axis``, the reference's from there.
    backward: dx = dy at the cropped cells, 0 elsewhere; the reference gets no gradient (0).

    Settings: axis (default 2, negative counts from the end), offset. Every cropped axis needs
    offset + reference size <= x's size.

    On the device (``cuda/crop.cu``) both directions are gathers over any number of axes, with
    the sizes and offsets in a layer-owned int32 blob (x's size, y's size, offset per axis).
    """

    params = ("crop_param",)
    num_bottom, num_top = 2, 1
    has_gpu = True
    kernels = "crop.cu"

    def layer_setup(self, bottom, top):
        self.geometry = self.new_blob(dtype=np.int32)

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        p = self.param.crop_param
        x, ref = bottom[0].shape, bottom[1].shape
        start = bottom[0].canonical_axis(p.axis)
        cropped = len(x) - start
        self.require(len(p.offset) in (0, 1, cropped),
                     f"needs 0, 1 or {cropped} offsets (one per axis from axis {start} on), "
                     f"got {len(p.offset)}")
        self.require(len(ref) >= len(x), f"bottom[1] of shape {ref} has fewer axes than "
                                         f"bottom[0] of shape {x}")
        self.require(bottom[0] is not top[0], "cannot be computed in place")
        offsets = list(p.offset) if len(p.offset) > 1 else list(p.offset or [0]) * cropped
        self.index = (slice(None),) * start
        for axis, offset in enumerate(offsets, start):
            self.require(offset + ref[axis] <= x[axis],
                         f"the crop of axis {axis} is out of bounds: offset {offset} + size "
                         f"{ref[axis]} > {x[axis]}")
            self.index += (slice(offset, offset + ref[axis]),)
        top[0].reshape(x[:start] + ref[start:len(x)])
        # Rewritten on the host only when the shapes change, so a device run copies it once.
        geometry = [(size, kept, cells.start or 0)
                    for size, kept, cells in zip(x, top[0].shape, self.index)]
        if self.geometry.shape != (len(x), 3) or not np.array_equal(self.geometry.cpu_data,
                                                                    geometry):
            self.geometry.reshape((len(x), 3))
            self.geometry.data[...] = geometry

    def forward_cpu(self, bottom, top):
        top[0].data[...] = bottom[0].data[self.index]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 0
            bottom[0].diff[self.index] = top[0].diff
        if propagate_down[1]:
            bottom[1].diff[...] = 0

    def forward_gpu(self, bottom, top):
        x, y = bottom[0], top[0]
        self.launch_1d("crop_forward", y.count, x.gpu_data, np.int32(x.num_axes),
                       self.geometry.gpu_data, y.mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x = bottom[0]
            self.launch_1d("crop_backward", x.count, top[0].gpu_diff, np.int32(x.num_axes),
                           self.geometry.gpu_data, x.mutable_gpu_diff)
        if propagate_down[1]:
            bottom[1].zero_diff()
