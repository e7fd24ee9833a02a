"""SGD with momentum.

    v <- momentum * v + lr * lr_mult * g
    w <- w - v

``v`` (one blob per parameter) is the history a snapshot saves. On the device one kernel
(cuda/optimizers.cu's ``sgd_update``, through ``update_param_gpu``) also folds in the iter_size
average, the weight decay and ``w -= v``, so a parameter's whole update is one pass over its
memory.
"""

import numpy as np

from .registry import register_solver
from .solver import Solver


@register_solver("SGD")
class SGDSolver(Solver):
    def compute_update(self, i, rate):
        blob, v = self.net.learnable_params[i], self.history[i].data
        v *= self.param.momentum
        v += (rate * self.net.params_lr[i]) * blob.diff
        blob.diff[...] = v

    def update_param_gpu(self, i, blob):
        """Parameter i's whole update in one kernel: g = diff / iter_size, plus weight_decay *
        decay_mult * w (L2) or * sign(w) (L1); v = momentum * v + lr * lr_mult * g; diff = v;
        w -= v. The arithmetic of the loop's scale_diff, regularize, compute_update and update,
        in the same order. The rate is read from device memory (``step_rate``)."""
        self.launch_update("sgd_update", i, blob, self.history_gpu(i),
                           np.float32(self.param.momentum), self.rate_pointer(i))
