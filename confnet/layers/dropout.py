"""Dropout: zero a random fraction of the inputs while training."""

import numpy as np

from .. import rng
from .base import TRAIN
from .neuron import Neuron
from .registry import register_layer


@register_layer("Dropout")
class Dropout(Neuron):
    """With p = dropout_ratio, in [0, 1), and a mask m of independent Bernoulli(1 - p) draws
    (m = u >= p for float32 u uniform in [0, 1) from confnet.rng, one per element, in C order,
    whatever the blob's dtype):

        TRAIN: y = x * m / (1 - p)          TEST: y = x

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: TRAIN dx = dy * m / (1 - p); TEST dx = dy.
    """

    params = ("dropout_param",)

    def layer_setup(self, bottom, top):
        dp = self.param.dropout_param
        self.ratio = float(dp.dropout_ratio)
        self.require(0 <= self.ratio < 1, f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.factor = None

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        if self.phase == TRAIN:
            keep = rng.get().random(x.shape, dtype=np.float32) >= np.float32(self.ratio)
            self.factor = keep.astype(x.dtype) / (1 - self.ratio)
        else:
            self.factor = 1.0
        top[0].data[...] = x * self.factor

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.factor
