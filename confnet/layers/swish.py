"""Swish: the input gated by its own sigmoid."""

import numpy as np

from .elementwise import Elementwise
from .registry import register_layer


@register_layer("Swish")
class Swish(Elementwise):
    """y = x * sigmoid(beta * x)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * (beta * y + s * (1 - beta * y)), s = sigmoid(beta * x) cached by forward
    (a layer-owned blob on the device), so nothing needs x and in place keeps no copy of it.
    """

    params = ("swish_param",)
    keeps_input = False

    def layer_setup(self, bottom, top):
        self.beta = float(self.param.swish_param.beta)
        self.sigmoid_blob = None

    def function(self, x):
        self.sigmoid = 0.5 * np.tanh(0.5 * self.beta * x) + 0.5
        return x * self.sigmoid

    def derivative(self, x, y):
        by = self.beta * y
        return by + self.sigmoid * (1 - by)

    # The device kernels take the cached sigmoid besides the Elementwise arguments.
    def forward_gpu(self, bottom, top):
        x = bottom[0]
        if self.sigmoid_blob is None:
            self.sigmoid_blob = self.new_blob()
        self.sigmoid_blob.reshape_like(x)
        self.launch_1d("swish_forward", x.count, x.gpu_data, top[0].mutable_gpu_data,
                       self.sigmoid_blob.mutable_gpu_data, np.float32(self.beta))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y = top[0]
            self.launch_1d("swish_backward", y.count, y.gpu_diff, y.gpu_data,
                           self.sigmoid_blob.gpu_data, bottom[0].mutable_gpu_diff,
                           np.float32(self.beta))
