"""RMSProp (Tieleman and Hinton, 2012).

    h <- rms_decay * h + (1 - rms_decay) * g^2
    step = lr * lr_mult * g / (sqrt(h) + delta)

``h`` (one blob per parameter) is the history a snapshot saves. As in Caffe, momentum must be 0
and 0 <= rms_decay < 1. On the device, cuda/optimizers.cu's ``rmsprop_update`` does the whole
update in one pass.
"""

import numpy as np

from ..errors import ConfnetError
from .registry import register_solver
from .solver import Solver


@register_solver("RMSProp")
class RMSPropSolver(Solver):
    def _check_param(self):
        super()._check_param()
        p = self.param
        if p.momentum != 0:
            raise ConfnetError(f"solver: momentum cannot be used with RMSProp (momentum: "
                               f"{p.momentum:g}); remove it or set it to 0")
        if not 0 <= p.rms_decay < 1:
            raise ConfnetError(f"solver: rms_decay should lie in [0, 1) (rms_decay: "
                               f"{p.rms_decay:g})")

    def compute_update(self, i, rate):
        blob, h = self.net.learnable_params[i], self.history[i].data
        decay = self.param.rms_decay
        g = blob.diff
        h *= decay
        h += (1 - decay) * (g * g)
        blob.diff[...] = (rate * self.net.params_lr[i]) * (g / (np.sqrt(h) + self.param.delta))

    def update_param_gpu(self, i, blob):
        decay = self.param.rms_decay
        self.launch_update("rmsprop_update", i, blob, self.history_gpu(i),
                           np.float32(decay), np.float32(1 - decay), self.rate_pointer(i),
                           np.float32(self.param.delta))
