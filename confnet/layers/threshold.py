"""Threshold: a step function of the input."""

import numpy as np

from .neuron import Neuron
from .registry import register_layer


@register_layer("Threshold")
class Threshold(Neuron):
    """y = 1 where x > threshold, else 0.

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: none, as in Caffe: asking for the gradient of the bottom is an error
    (force_backward skips this layer).
    """

    params = ("threshold_param",)
    has_gpu = True
    kernels = "neuron.cu"

    def layer_setup(self, bottom, top):
        self.threshold = float(self.param.threshold_param.threshold)

    def forward_cpu(self, bottom, top):
        top[0].data[...] = bottom[0].data > self.threshold

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.fail("has no backward (as in Caffe); nothing can learn through it: "
                      "set propagate_down: false or move it off the path to the loss")

    def forward_gpu(self, bottom, top):
        x = bottom[0]
        self.launch_1d("threshold_forward", x.count, x.gpu_data, top[0].mutable_gpu_data,
                       np.float32(self.threshold))

    # Nothing to compute on either side: the same refusal.
    backward_gpu = backward_cpu

    def allow_force_backward(self, bottom_index):
        return False
