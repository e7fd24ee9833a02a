"""SigmoidCrossEntropyLoss: the logistic loss of independent binary targets, from raw scores."""

import numpy as np

from .base import LossLayer
from .loss_normalizer import BATCH_SIZE, normalization_mode, normalizer
from .registry import register_layer
from .softmax_loss import ignore_label


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(LossLayer):
    """p = sigmoid(x);  loss = -sum over counted k of [t_k log p_k + (1 - t_k) log(1 - p_k)]
    / normalizer, computed stably from x as
        sum_k  max(x_k, 0) - x_k t_k + log(1 + exp(-|x_k|)).

    bottom[0]: scores x, shape (N, ...).   bottom[1]: targets t in [0, 1], the same count.
    top[0]: the scalar loss.
    A target whose integer part (C's int cast) equals loss_param.ignore_label is not counted and
    gets no gradient. normalizer (loss_param.normalization): FULL = count, VALID = number of
    counted targets, BATCH_SIZE = N, NONE = 1; at least 1. As in Caffe, when neither
    normalization nor the legacy normalize (true: VALID, false: BATCH_SIZE) is set, the
    default is BATCH_SIZE, not the proto default VALID: old nets keep dividing by N.
    backward: dx = w / normalizer * (p - t) at counted targets, 0 at ignored ones,
    w = top[0].diff; no gradient to the targets.
    """

    num_bottom = 2

    def layer_setup(self, bottom, top):
        lp = self.param.loss_param
        self.ignore_label = ignore_label(lp)
        self.normalization = normalization_mode(lp, default=BATCH_SIZE)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.require(bottom[0].count == bottom[1].count,
                     f"scores {bottom[0].shape} and targets {bottom[1].shape} need the same "
                     "count")

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(-1)
        t = bottom[1].data.reshape(-1)
        self.valid = (np.ones(x.shape, bool) if self.ignore_label is None
                      else t.astype(np.int64) != self.ignore_label)
        losses = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        n = bottom[0].shape[0]
        self.norm = normalizer(self.normalization, n, x.size // n if n else 0,
                               int(self.valid.sum()))
        top[0].data[...] = float(losses[self.valid].sum()) / self.norm

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            self.fail("cannot back-propagate to the targets (bottom[1])")
        if not propagate_down[0]:
            return
        x = bottom[0].data.reshape(-1)
        p = 0.5 * np.tanh(0.5 * x) + 0.5
        dx = np.where(self.valid, p - bottom[1].data.reshape(-1), 0.0)
        dx *= float(top[0].diff.flat[0]) / self.norm
        bottom[0].diff[...] = dx.reshape(bottom[0].shape)
