"""Log: a logarithm of an affine function of the input."""

import numpy as np

from .elementwise import Elementwise, log_of_base
from .registry import register_layer


@register_layer("Log")
class Log(Elementwise):
    """y = log_base(shift + scale * x)   (base -1 means e)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place; x is then kept).
    backward: dx = dy * scale / (ln(base) * (shift + scale * x)).
    """

    params = ("log_param",)
    kernel = "log"

    def layer_setup(self, bottom, top):
        p = self.param.log_param
        log_base = log_of_base(self, float(p.base))
        self.require(log_base != 0, "base 1 has no logarithm")
        self.base_scale = 1.0 / log_base
        self.scale, self.shift = float(p.scale), float(p.shift)

    def function(self, x):
        return self.base_scale * np.log(self.scale * x + self.shift)

    def derivative(self, x, y):
        return (self.base_scale * self.scale) / (self.scale * x + self.shift)

    def kernel_args(self):
        return self.base_scale, self.scale, self.shift, self.base_scale * self.scale
