"""AdaGrad (Duchi et al., 2011).

    h <- h + g^2
    step = lr * lr_mult * g / (sqrt(h) + delta)

``h`` (one blob per parameter) is the history a snapshot saves. As in Caffe, momentum must be 0.
On the device, cuda/optimizers.cu's ``adagrad_update`` does the whole update in one pass.
"""

import numpy as np

from ..errors import ConfnetError
from .registry import register_solver
from .solver import Solver


@register_solver("AdaGrad")
class AdaGradSolver(Solver):
    def _check_param(self):
        super()._check_param()
        if self.param.momentum != 0:
            raise ConfnetError(f"solver: momentum cannot be used with AdaGrad (momentum: "
                               f"{self.param.momentum:g}); remove it or set it to 0")

    def compute_update(self, i, rate):
        blob, h = self.net.learnable_params[i], self.history[i].data
        g = blob.diff
        h += g * g
        blob.diff[...] = (rate * self.net.params_lr[i]) * (g / (np.sqrt(h) + self.param.delta))

    def update_param_gpu(self, i, blob):
        self.launch_update("adagrad_update", i, blob, self.history_gpu(i), self.rate_pointer(i),
                           np.float32(self.param.delta))
