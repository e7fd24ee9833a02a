"""Elementwise: the function/derivative pattern of the activation layers, on host and device.

A layer of this kind states y = f(x) once for the host (``function``, ``derivative`` in numpy) and
once for the device: a kernel pair in ``cuda/neuron.cu`` computing the same formula,

    <kernel>_forward(int n, const float* x, float* y, <scalars>)
    <kernel>_backward(int n, const float* dy, const float* x, const float* y, float* dx, <scalars>)

with ``<scalars>`` the layer's ``kernel_args()`` (the same for both, in that order), so a new
activation adds one class and two short kernels.
"""

import math

import numpy as np

from .neuron import Neuron


class Elementwise(Neuron):
    """y = f(x) element by element; backward: dx = dy * f'(x).

    Subclasses give ``function(x)`` and ``derivative(x, y)`` (host), and ``kernel`` with
    ``kernel_args()`` (device). With ``keeps_input`` (the default) the derivative gets the input
    x, copied before forward overwrites it in place; without it, it gets whatever the bottom
    holds (y when in place) and must work from y or its own cache.
    """

    keeps_input = True
    has_gpu = True
    kernels = "neuron.cu"
    kernel = None   # prefix of the kernel pair in neuron.cu: "elu" for elu_forward/elu_backward

    def forward_cpu(self, bottom, top):
        if self.keeps_input:
            self.keep_input(bottom, top)
        top[0].data[...] = self.function(bottom[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x = self._input(bottom, top).data
            bottom[0].diff[...] = top[0].diff * self.derivative(x, top[0].data)

    def forward_gpu(self, bottom, top):
        if self.keeps_input:
            self.keep_input(bottom, top)
        x = bottom[0]
        self.launch_1d(f"{self.kernel}_forward", x.count, x.gpu_data, top[0].mutable_gpu_data,
                       *self._scalars())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y = top[0]
            self.launch_1d(f"{self.kernel}_backward", y.count, y.gpu_diff,
                           self._input(bottom, top).gpu_data, y.gpu_data,
                           bottom[0].mutable_gpu_diff, *self._scalars())

    def function(self, x):
        raise NotImplementedError

    def derivative(self, x, y):
        raise NotImplementedError

    def kernel_args(self):
        """The layer's scalar parameters, in the order its kernels take them."""
        return ()

    def _input(self, bottom, top):
        return self.kept_input(bottom, top) if self.keeps_input else bottom[0]

    def _scalars(self):
        return [np.float32(a) for a in self.kernel_args()]


def log_of_base(layer, base):
    """Natural log of a ``base`` parameter (Exp, Log): -1 means e; anything else must be
    positive."""
    if base == -1:
        return 1.0
    layer.require(base > 0, f"base must be strictly positive (or -1 for e), got {base}")
    return math.log(base)
