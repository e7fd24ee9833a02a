"""TanH: the hyperbolic tangent."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("TanH")
class TanH(Elementwise):
    """y = tanh(x)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * (1 - y^2), from y alone (nothing kept in place).
    """

    params = ("tanh_param",)
    keeps_input = False
    kernel = "tanh"

    def function(self, x):
        return np.tanh(x)

    def derivative(self, x, y):
        return 1 - y * y
