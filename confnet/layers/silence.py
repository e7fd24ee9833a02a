"""Silence: consumes blobs nobody else needs, so that they are not reported as net outputs."""

from .base import Layer
from .registry import register_layer


@register_layer("Silence")
class Silence(Layer):
    """No computation.

    bottom: 1 or more blobs, any shapes.   top: none.
    backward: writes zeros into the diff of every bottom it back-propagates to (on the device
    when one is in use: a memset, no copy).
    """

    min_bottom = 1
    num_top = 0
    has_gpu = True

    def reshape(self, bottom, top):
        pass

    def forward_cpu(self, bottom, top):
        pass

    def backward_cpu(self, top, propagate_down, bottom):
        for blob, down in zip(bottom, propagate_down):
            if down:
                blob.diff[...] = 0

    def forward_gpu(self, bottom, top):
        pass

    def backward_gpu(self, top, propagate_down, bottom):
        for blob, down in zip(bottom, propagate_down):
            if down:
                blob.zero_diff()
