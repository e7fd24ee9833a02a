"""Clip: the input limited to [min, max]."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("Clip")
class Clip(Elementwise):
    """y = max(min, min(x, max))

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place; x is then kept).
    backward: dx = dy where min <= x <= max (bounds included, as in Caffe), else 0.
    """

    params = ("clip_param",)
    kernel = "clip"

    def layer_setup(self, bottom, top):
        p = self.param.clip_param
        self.require(p.HasField("min") and p.HasField("max"),
                     "clip_param needs both min and max")
        self.low, self.high = float(p.min), float(p.max)

    def function(self, x):
        return np.maximum(self.low, np.minimum(x, self.high))

    def derivative(self, x, y):
        return (x >= self.low) & (x <= self.high)

    def kernel_args(self):
        return self.low, self.high
