"""Exp: an exponential of an affine function of the input."""

import math

import numpy as np

from .elementwise import Elementwise, log_of_base
from .registry import register_layer


@register_layer("Exp")
class Exp(Elementwise):
    """y = base ^ (shift + scale * x)   (base -1 means e), computed as
    exp(ln(base) * shift) * exp(ln(base) * scale * x).

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * y * ln(base) * scale, from y alone (nothing kept in place).
    """

    params = ("exp_param",)
    keeps_input = False
    kernel = "exp"

    def layer_setup(self, bottom, top):
        p = self.param.exp_param
        log_base = log_of_base(self, float(p.base))
        self.inner_scale = log_base * float(p.scale)
        self.outer_scale = math.exp(log_base * float(p.shift))

    def function(self, x):
        return self.outer_scale * np.exp(self.inner_scale * x)

    def derivative(self, x, y):
        return self.inner_scale * y

    def kernel_args(self):
        return self.inner_scale, self.outer_scale
