"""Nesterov's accelerated gradient, in Caffe's form.

    v' <- momentum * v + lr * lr_mult * g
    step = (1 + momentum) * v' - momentum * v
    w <- w - step

``v`` (one blob per parameter) is the history a snapshot saves, as in Caffe. On the device,
cuda/optimizers.cu's ``nesterov_update`` does the average, the decay, the rule and ``w -= step``
in one pass.
"""

import numpy as np

from .registry import register_solver
from .solver import Solver


@register_solver("Nesterov")
class NesterovSolver(Solver):
    def compute_update(self, i, rate):
        blob, v = self.net.learnable_params[i], self.history[i].data
        momentum = self.param.momentum
        previous = v.copy()
        v *= momentum
        v += (rate * self.net.params_lr[i]) * blob.diff
        blob.diff[...] = (1 + momentum) * v - momentum * previous

    def update_param_gpu(self, i, blob):
        momentum = self.param.momentum
        self.launch_update("nesterov_update", i, blob, self.history_gpu(i),
                           np.float32(momentum), np.float32(1 + momentum), self.rate_pointer(i))
