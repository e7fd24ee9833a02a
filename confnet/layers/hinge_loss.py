"""HingeLoss: the one-vs-all hinge loss of a multi-class classifier (an SVM objective)."""

import numpy as np

from ..proto import confnet_pb2 as pb
from .base import LossLayer
from .registry import register_layer
from .softmax_loss import check_label_count, read_labels

L1, L2 = pb.HingeLossParameter.L1, pb.HingeLossParameter.L2


@register_layer("HingeLoss")
class HingeLoss(LossLayer):
    """With s[n, k] = -1 for the true class k = label[n] and +1 for every other class,
        m[n, k] = max(0, 1 + s[n, k] * x[n, k])
        loss = sum_{n,k} m[n, k] / N                (hinge_loss_param.norm L1, the default)
        loss = sum_{n,k} m[n, k]^2 / N              (norm L2)

    bottom[0]: scores x, shape (N, ...), flattened to (N, K).
    bottom[1]: N labels with integer values in 0..K-1.   top[0]: the scalar loss.
    backward: dx[n, k] = w / N * s[n, k] * [m[n, k] > 0]   (L1)
              dx[n, k] = 2 w / N * s[n, k] * m[n, k]       (L2),   w = top[0].diff;
    no gradient to the labels. loss_param is not read (the loss always divides by N).
    """

    params = ("hinge_loss_param",)
    num_bottom = 2

    def layer_setup(self, bottom, top):
        self.norm = self.param.hinge_loss_param.norm
        self.require(self.norm in (L1, L2), f"unknown norm {self.norm}")

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        n = bottom[0].shape[0]
        self.dims = (n, bottom[0].count // n if n else 0, 1)
        check_label_count(self, bottom[1], self.dims)

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.dims[:2])
        labels, _ = read_labels(self, bottom[1], self.dims)
        self.sign = np.ones_like(x)
        np.put_along_axis(self.sign, labels, -1.0, axis=1)
        self.margin = np.maximum(0.0, 1.0 + self.sign * x)
        total = self.margin.sum() if self.norm == L1 else (self.margin * self.margin).sum()
        top[0].data[...] = float(total) / self.dims[0]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            self.fail("cannot back-propagate to the labels (bottom[1])")
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.flat[0]) / self.dims[0]
        if self.norm == L1:
            dx = self.sign * (self.margin > 0)
        else:
            dx = 2.0 * self.sign * self.margin
        bottom[0].diff[...] = (scale * dx).reshape(bottom[0].shape)
