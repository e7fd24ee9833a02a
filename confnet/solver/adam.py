"""Adam (Kingma and Ba, 2014), with Caffe's names: beta1 = momentum, beta2 = momentum2,
eps = delta, and t = iter + 1.

    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    step = lr * lr_mult * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)

Two history blobs per parameter, laid out as Caffe's .solverstate keeps them: ``m`` of all N
parameters, then their ``v`` (``history[N + i]``). On the device, cuda/optimizers.cu's
``adam_update`` does the whole update in one pass.
"""

import math

import numpy as np

from .registry import register_solver
from .solver import Solver


@register_solver("Adam")
class AdamSolver(Solver):
    history_per_param = 2

    def _correction(self):
        """sqrt(1 - beta2^t) / (1 - beta1^t), t = iter + 1: the bias correction of m and v."""
        t = self.iter + 1
        return math.sqrt(1 - self.param.momentum2 ** t) / (1 - self.param.momentum ** t)

    def compute_update(self, i, rate):
        blob = self.net.learnable_params[i]
        m, v = (self.history[i].data,
                self.history[len(self.net.learnable_params) + i].data)
        beta1, beta2 = self.param.momentum, self.param.momentum2
        correction = self._correction()
        g = blob.diff
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        local_rate = rate * self.net.params_lr[i]
        blob.diff[...] = (local_rate * correction) * (m / (np.sqrt(v) + self.param.delta))

    def step_rate(self, i, rate):
        """lr * lr_mult * the bias correction of iteration t (it changes every iteration)."""
        return rate * self.net.params_lr[i] * self._correction()

    def update_param_gpu(self, i, blob):
        beta1, beta2 = self.param.momentum, self.param.momentum2
        self.launch_update("adam_update", i, blob, self.history_gpu(i, 0), self.history_gpu(i, 1),
                           np.float32(beta1), np.float32(1 - beta1), np.float32(beta2),
                           np.float32(1 - beta2), self.rate_pointer(i),
                           np.float32(self.param.delta))
