"""AbsVal: the absolute value."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("AbsVal")
class AbsVal(Elementwise):
    """y = |x|

    bottom: 1 blob, any shape.   top: 1 blob, same shape (in place allowed here, x is then kept;
    Caffe refuses).
    backward: dx = sign(x) * dy (0 at x = 0).
    """

    kernel = "absval"

    def function(self, x):
        return np.abs(x)

    def derivative(self, x, y):
        return np.sign(x)
