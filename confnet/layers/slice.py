"""Slice: cut a blob into pieces along one axis."""

import numpy as np

from .base import Layer
from .concat import pieces
from .registry import register_layer


@register_layer("Slice")
class Slice(Layer):
    """y_j = x[.., p_j : p_(j+1), ..] along ``axis``, with p_0 = 0, p_1 .. p_(T-1) the
    slice_point values and p_T the axis size; without slice_point, T equal pieces.

    bottom: 1 blob.   top: T >= 1 blobs, x's shape except along the axis (a single top views
            the bottom's data and diff, as in Caffe).
    backward: dx = the tops' diffs joined along the axis.

    Settings: axis (default 1, negative counts from the end) or the legacy slice_dim
    (non-negative; not together with axis); slice_point (T - 1 increasing values, or none:
    the axis size must then divide into T).
    Device: cuda/structure.cu, one copy kernel per top.
    """

    params = ("slice_param",)
    num_bottom = 1
    min_top = 1
    has_gpu = True
    kernels = "structure.cu"

    def layer_setup(self, bottom, top):
        p = self.param.slice_param
        self.require(not (p.HasField("axis") and p.HasField("slice_dim")),
                     "give either axis or slice_dim, not both")
        points = list(p.slice_point)
        self.require(not points or len(points) == len(top) - 1,
                     f"{len(points)} slice_point value(s) make {len(points) + 1} pieces, but "
                     f"there are {len(top)} top blob(s)")
        self.require(all(a < b for a, b in zip([0] + points, points)),
                     f"slice_point values must be positive and increasing, got {points}")

    def reshape(self, bottom, top):
        p, x = self.param.slice_param, bottom[0]
        if p.HasField("slice_dim"):
            self.require(p.slice_dim < x.num_axes,
                         f"slice_dim {p.slice_dim} out of range for shape {x.shape}")
            self.axis = int(p.slice_dim)
        else:
            self.axis = x.canonical_axis(p.axis)
        size = x.shape[self.axis]
        points = list(p.slice_point)
        if not points:
            self.require(size % len(top) == 0,
                         f"{len(top)} top blobs do not divide axis {self.axis} of size {size} "
                         "evenly; give slice_point")
            points = [size // len(top) * j for j in range(1, len(top))]
        self.require(not points or points[-1] <= size,
                     f"slice_point {points} goes past the size {size} of axis {self.axis}")
        self.points = points
        if len(top) == 1:
            top[0].share_data(x)
            top[0].share_diff(x)
            return
        self.require(all(x is not t for t in top), "cannot be computed in place")
        for blob, start, end in zip(top, [0] + points, points + [size]):
            blob.reshape(x.shape[:self.axis] + (end - start,) + x.shape[self.axis + 1:])

    def forward_cpu(self, bottom, top):
        if len(top) > 1:
            for blob, piece in zip(top, np.split(bottom[0].data, self.points, axis=self.axis)):
                blob.data[...] = piece

    def backward_cpu(self, top, propagate_down, bottom):
        if len(top) > 1 and propagate_down[0]:
            np.concatenate([t.diff for t in top], axis=self.axis, out=bottom[0].diff)

    def forward_gpu(self, bottom, top):
        if len(top) > 1:
            for blob, geometry in pieces(bottom[0], top, self.axis):
                self.launch_1d("slice_forward", blob.count, bottom[0].gpu_data,
                               blob.mutable_gpu_data, *geometry)

    def backward_gpu(self, top, propagate_down, bottom):
        if len(top) > 1 and propagate_down[0]:
            for blob, geometry in pieces(bottom[0], top, self.axis):
                self.launch_1d("slice_backward", blob.count, blob.gpu_diff,
                               bottom[0].mutable_gpu_diff, *geometry)
