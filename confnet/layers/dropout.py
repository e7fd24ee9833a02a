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
    or, with scale_train false (NVIDIA Caffe's field; honoured when the schema has it):
        TRAIN: y = x * m                    TEST: y = x * (1 - p)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * (the factor y was multiplied by): m / (1 - p), m, 1 or (1 - p).
    """

    params = ("dropout_param",)

    def layer_setup(self, bottom, top):
        dp = self.param.dropout_param
        self.ratio = float(dp.dropout_ratio)
        self.require(0 <= self.ratio < 1, f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.scale_train = bool(getattr(dp, "scale_train", True))
        self.factor = None

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        if self.phase == TRAIN:
            keep = rng.get().random(x.shape, dtype=np.float32) >= np.float32(self.ratio)
            scale = 1 / (1 - self.ratio) if self.scale_train else 1.0
            self.factor = keep.astype(x.dtype) * scale
        else:
            self.factor = 1.0 if self.scale_train else 1 - self.ratio
        top[0].data[...] = x * self.factor

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.factor
