"""Power: a power of an affine function of the input."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("Power")
class Power(Elementwise):
    """y = (shift + scale * x) ^ power

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place; x is then kept).
    backward: dx = dy * power * scale * (shift + scale * x) ^ (power - 1); zero when
    power * scale = 0 (y is then constant).
    """

    params = ("power_param",)
    kernel = "power"

    def layer_setup(self, bottom, top):
        p = self.param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.diff_scale = self.power * self.scale

    def function(self, x):
        base = self.scale * x + self.shift
        return base if self.power == 1 else np.power(base, self.power)

    def derivative(self, x, y):
        if self.diff_scale == 0:
            return 0.0
        if self.power == 1:
            return self.diff_scale
        return self.diff_scale * np.power(self.scale * x + self.shift, self.power - 1)

    def kernel_args(self):
        return self.power, self.scale, self.shift, self.diff_scale
