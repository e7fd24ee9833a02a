"""BNLL: the binomial normal log likelihood (softplus)."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("BNLL")
class BNLL(Elementwise):
    """y = log(1 + exp(x)) (the binomial normal log likelihood, softplus), computed without
    overflow as max(x, 0) + log(1 + exp(-|x|)).

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place; x is then kept).
    backward: dx = dy * sigmoid(x).
    """

    kernel = "bnll"

    def function(self, x):
        return np.logaddexp(0, x)

    def derivative(self, x, y):
        return 0.5 * np.tanh(0.5 * x) + 0.5
