"""Concat: join blobs along one axis."""

import numpy as np

from .base import Layer
from .registry import register_layer


def pieces(joined, parts, axis):
    """(part, geometry) for each part of ``joined`` along ``axis``, in order; the geometry is
    the (piece_block, joined_block, offset_block) arguments of cuda/structure.cu's copies."""
    inner = joined.count_range(axis + 1)
    offset = 0
    for part in parts:
        size = part.shape[axis]
        yield part, (np.int32(size * inner), np.int32(joined.shape[axis] * inner),
                     np.int32(offset * inner))
        offset += size


@register_layer("Concat")
class Concat(Layer):
    """y = [x_0, x_1, ..] joined along concat_param.axis (default 1; the legacy concat_dim is
    the same, non-negative, and may not be given together with axis).

    bottom: 1 or more blobs with equal shapes except along the axis.
    top: 1 blob whose size along the axis is the sum of the bottoms' (a single bottom is viewed,
    not copied).
    backward: dx_i = the slice of dy that x_i was copied to.
    Device: cuda/structure.cu, one copy kernel per bottom.
    """

    params = ("concat_param",)
    min_bottom = 1
    num_top = 1
    has_gpu = True
    kernels = "structure.cu"

    def layer_setup(self, bottom, top):
        cp = self.param.concat_param
        self.require(not (cp.HasField("axis") and cp.HasField("concat_dim")),
                     "give either axis or concat_dim, not both")

    def reshape(self, bottom, top):
        cp = self.param.concat_param
        first = bottom[0]
        if cp.HasField("concat_dim"):
            self.require(cp.concat_dim < first.num_axes,
                         f"concat_dim {cp.concat_dim} out of range for shape {first.shape}")
            self.axis = int(cp.concat_dim)
        else:
            self.axis = first.canonical_axis(cp.axis)
        shape = list(first.shape)
        for i, blob in enumerate(bottom[1:], 1):
            other = list(blob.shape)
            self.require(len(other) == len(shape) and all(
                a == b for j, (a, b) in enumerate(zip(shape, other)) if j != self.axis),
                f"bottom[{i}] has shape {blob.shape}, which does not match bottom[0]'s "
                f"{first.shape} except along axis {self.axis}")
            shape[self.axis] += other[self.axis]
        if len(bottom) == 1:
            top[0].share_data(first)
            top[0].share_diff(first)
        else:
            self.require(all(b is not top[0] for b in bottom), "cannot be computed in place")
            top[0].reshape(shape)

    def forward_cpu(self, bottom, top):
        if len(bottom) > 1:
            np.concatenate([b.data for b in bottom], axis=self.axis, out=top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            return
        ends = np.cumsum([b.shape[self.axis] for b in bottom])
        pieces = np.split(top[0].diff, ends[:-1], axis=self.axis)
        for blob, piece, down in zip(bottom, pieces, propagate_down):
            if down:
                blob.diff[...] = piece

    def forward_gpu(self, bottom, top):
        if len(bottom) > 1:
            for blob, geometry in pieces(top[0], bottom, self.axis):
                self.launch_1d("concat_forward", blob.count, blob.gpu_data,
                               top[0].mutable_gpu_data, *geometry)

    def backward_gpu(self, top, propagate_down, bottom):
        if len(bottom) > 1:
            for (blob, geometry), down in zip(pieces(top[0], bottom, self.axis), propagate_down):
                if down:
                    self.launch_1d("concat_backward", blob.count, top[0].gpu_diff,
                                   blob.mutable_gpu_diff, *geometry)
