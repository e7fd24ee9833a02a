"""HingeLoss: the one-vs-all hinge loss of a multi-class classifier (an SVM objective)."""

import numpy as np

from ..proto import confnet_pb2 as pb
from .base import LossLayer
from .registry import register_layer
from .softmax_loss import REDUCE_THREADS, check_label_count, read_labels

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
    On the device (cuda/loss.cu) a label outside 0..K-1 cannot be reported: the loss and its
    gradient become NaN, which the solver stops on.
    """

    params = ("hinge_loss_param",)
    num_bottom = 2
    has_gpu = True
    kernels = "loss.cu"

    def layer_setup(self, bottom, top):
        self.norm = self.param.hinge_loss_param.norm
        self.require(self.norm in (L1, L2), f"unknown norm {self.norm}")
        self.element_loss = self.new_blob()   # device: m or m^2 per score

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        n = bottom[0].shape[0]
        self.dims = (n, bottom[0].count // n if n else 0, 1)
        check_label_count(self, bottom[1], self.dims)
        self.element_loss.reshape((bottom[0].count,))

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.dims[:2])
        labels, _ = read_labels(self, bottom[1], self.dims)
        self.sign = np.ones_like(x)
        np.put_along_axis(self.sign, labels, -1.0, axis=1)
        self.margin = np.maximum(0.0, 1.0 + self.sign * x)
        total = self.margin.sum() if self.norm == L1 else (self.margin * self.margin).sum()
        top[0].data[...] = float(total) / self.dims[0]

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.flat[0]) / self.dims[0]
        if self.norm == L1:
            dx = self.sign * (self.margin > 0)
        else:
            dx = 2.0 * self.sign * self.margin
        bottom[0].diff[...] = (scale * dx).reshape(bottom[0].shape)

    def forward_gpu(self, bottom, top):
        num, classes, _ = self.dims
        self.launch_1d("hinge_loss_forward", bottom[0].count, bottom[0].gpu_data,
                       bottom[1].gpu_data, self.element_loss.mutable_gpu_data, np.int32(classes),
                       np.int32(self.norm == L2))
        self.launch("loss_reduce", 1, REDUCE_THREADS, np.int32(bottom[0].count),
                    self.element_loss.gpu_data, 0, top[0].mutable_gpu_data, 0,
                    np.float32(max(num, 1)), np.float32(1))

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        num, classes, _ = self.dims
        self.launch_1d("hinge_loss_backward", bottom[0].count, bottom[0].gpu_data,
                       bottom[1].gpu_data, top[0].gpu_diff, bottom[0].mutable_gpu_diff,
                       np.int32(classes), np.int32(self.norm == L2), np.float32(num))
