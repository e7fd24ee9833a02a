"""Sigmoid: the logistic function."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("Sigmoid")
class Sigmoid(Elementwise):
    """y = 1 / (1 + exp(-x)), computed as 0.5 * tanh(0.5 * x) + 0.5 (no overflow).

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * y * (1 - y), from y alone (nothing kept in place).
    """

    params = ("sigmoid_param",)
    keeps_input = False
    kernel = "sigmoid"

    def function(self, x):
        return 0.5 * np.tanh(0.5 * x) + 0.5

    def derivative(self, x, y):
        return y * (1 - y)
