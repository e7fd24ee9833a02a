"""Tile: repeat a blob along one axis."""

import numpy as np

from .base import Layer
from .registry import register_layer


@register_layer("Tile")
class Tile(Layer):
    """y = tiles copies of x placed one after the other along ``axis``:
    y[.., t * d + i, ..] = x[.., i, ..] for t < tiles, d = x's size along the axis
    (numpy's tile: the whole block repeats, not each entry).

    bottom: 1 blob (d_0, .., d_axis, .., d_n).   top: (d_0, .., tiles * d_axis, .., d_n).
    backward: dx = the sum of the tiles' parts of dy.

    Settings: axis (default 1, negative counts from the end), tiles (required, >= 1).
    Device: cuda/structure.cu (backward sums the tiles in order, one thread per x element).
    """

    params = ("tile_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "structure.cu"

    def layer_setup(self, bottom, top):
        p = self.param.tile_param
        self.require(p.HasField("tiles"), "tiles must be set")
        self.require(p.tiles > 0, f"tiles must be positive, got {p.tiles}")
        self.tiles = p.tiles

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = bottom[0].canonical_axis(self.param.tile_param.axis)
        self.require(bottom[0] is not top[0], "cannot be computed in place")
        # The view that names the tiles: (outer, tiles, inner) with inner = x's count from axis.
        self.blocks = (bottom[0].count_range(0, self.axis), self.tiles,
                       bottom[0].count_range(self.axis))
        top[0].reshape(shape[:self.axis] + (shape[self.axis] * self.tiles,)
                       + shape[self.axis + 1:])

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.blocks[0], 1, self.blocks[2])
        top[0].data.reshape(self.blocks)[...] = x

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = top[0].diff.reshape(self.blocks).sum(axis=1)
            bottom[0].diff[...] = dx.reshape(bottom[0].shape)

    def forward_gpu(self, bottom, top):
        self.launch_1d("tile_forward", top[0].count, bottom[0].gpu_data, top[0].mutable_gpu_data,
                       np.int32(self.tiles), np.int32(self.blocks[2]))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.launch_1d("tile_backward", bottom[0].count, top[0].gpu_diff,
                           bottom[0].mutable_gpu_diff, np.int32(self.tiles),
                           np.int32(self.blocks[2]))
