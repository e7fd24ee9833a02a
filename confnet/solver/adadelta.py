"""AdaDelta (Zeiler, 2012), in Caffe's form: the learning rate still scales the step.

    h  <- momentum * h + (1 - momentum) * g^2
    d  = g * sqrt((u + delta) / (h + delta))
    u  <- momentum * u + (1 - momentum) * d^2
    step = lr * lr_mult * d

Two history blobs per parameter, laid out as Caffe's .solverstate keeps them: the gradient
histories ``h`` of all N parameters, then their update histories ``u`` (``history[N + i]``).
On the device, cuda/optimizers.cu's ``adadelta_update`` does the whole update in one pass.
"""

import numpy as np

from .registry import register_solver
from .solver import Solver


@register_solver("AdaDelta")
class AdaDeltaSolver(Solver):
    history_per_param = 2

    def compute_update(self, i, rate):
        blob = self.net.learnable_params[i]
        h, u = (self.history[i].data,
                self.history[len(self.net.learnable_params) + i].data)
        momentum, delta = self.param.momentum, self.param.delta
        g = blob.diff
        h *= momentum
        h += (1 - momentum) * (g * g)
        d = g * np.sqrt((u + delta) / (h + delta))
        u *= momentum
        u += (1 - momentum) * (d * d)
        blob.diff[...] = (rate * self.net.params_lr[i]) * d

    def update_param_gpu(self, i, blob):
        momentum = self.param.momentum
        self.launch_update("adadelta_update", i, blob, self.history_gpu(i, 0),
                           self.history_gpu(i, 1), np.float32(momentum),
                           np.float32(1 - momentum), self.rate_pointer(i),
                           np.float32(self.param.delta))
