"""ELU: the exponential linear unit."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("ELU")
class ELU(Elementwise):
    """y = x for x > 0, alpha * (exp(x) - 1) otherwise.

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place; x is then kept).
    backward: dx = dy for x > 0, dy * alpha * exp(x) otherwise (x = 0 takes the second branch,
    as in Caffe).
    """

    params = ("elu_param",)
    kernel = "elu"

    def layer_setup(self, bottom, top):
        self.alpha = float(self.param.elu_param.alpha)

    def function(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def derivative(self, x, y):
        return np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0)))

    def kernel_args(self):
        return (self.alpha,)
