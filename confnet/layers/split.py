"""Split: hand one blob to several consumers, each with its own gradient."""

from .base import Layer
from .registry import register_layer


@register_layer("Split")
class Split(Layer):
    """y_i = x for every top i (the tops view the bottom's data; no copy).

    bottom: 1 blob, any shape.   top: 1 or more blobs, same shape, each with its own diff.
    backward: dx = sum_i dy_i.
    The net inserts a Split wherever one top feeds several bottoms.
    """

    num_bottom = 1
    min_top = 1

    def reshape(self, bottom, top):
        for blob in top:
            self.require(blob is not bottom[0], "cannot be computed in place")
            blob.reshape_like(bottom[0])
            blob.share_data(bottom[0])

    def forward_cpu(self, bottom, top):
        """Nothing to compute: the tops already view the bottom's data."""

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            diff = bottom[0].diff
            diff[...] = top[0].diff
            for blob in top[1:]:
                diff += blob.diff
