"""SGD with momentum.

    v <- momentum * v + lr * lr_mult * g
    w <- w - v

``v`` (one blob per parameter) is the history a snapshot saves.
"""

from .registry import register_solver
from .solver import Solver


@register_solver("SGD")
class SGDSolver(Solver):
    def compute_update(self, i, rate):
        blob, v = self.net.learnable_params[i], self.history[i]
        v *= self.param.momentum
        v += (rate * self.net.params_lr[i]) * blob.diff
        blob.diff[...] = v
