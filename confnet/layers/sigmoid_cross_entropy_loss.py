"""SigmoidCrossEntropyLoss: the logistic loss of independent binary targets, from raw scores."""

import numpy as np

from .base import LossLayer
from .loss_normalizer import BATCH_SIZE, VALID, normalization_mode, normalizer
from .registry import register_layer
from .softmax_loss import REDUCE_THREADS, ignore_args, ignore_label


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
    On the device (cuda/loss.cu) the VALID count is taken there too and the loss stays in top[0].
    """

    input_names = {1: "targets"}

    num_bottom = 2
    has_gpu = True
    kernels = "loss.cu"

    def layer_setup(self, bottom, top):
        lp = self.param.loss_param
        self.ignore_label = ignore_label(lp)
        self.normalization = normalization_mode(lp, default=BATCH_SIZE)
        # Device buffers: per target its loss and whether it counts; the normalizer.
        self.target_loss, self.counted, self.norm_blob = (
            self.new_blob(), self.new_blob(), self.new_blob((1,)))

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.require(bottom[0].count == bottom[1].count,
                     f"scores {bottom[0].shape} and targets {bottom[1].shape} need the same "
                     "count")
        for blob in (self.target_loss, self.counted):
            blob.reshape((bottom[0].count,))

    def _fixed_normalizer(self, bottom):
        """The normalizer when it does not depend on which targets count; -1 for VALID (the
        kernel counts them)."""
        if self.normalization == VALID:
            return -1.0
        n = bottom[0].shape[0]
        return normalizer(self.normalization, n, bottom[0].count // n if n else 0, 0)

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
        if not propagate_down[0]:
            return
        x = bottom[0].data.reshape(-1)
        p = 0.5 * np.tanh(0.5 * x) + 0.5
        dx = np.where(self.valid, p - bottom[1].data.reshape(-1), 0.0)
        dx *= float(top[0].diff.flat[0]) / self.norm
        bottom[0].diff[...] = dx.reshape(bottom[0].shape)

    def forward_gpu(self, bottom, top):
        self.launch_1d("sigmoid_cross_entropy_loss_forward", bottom[0].count, bottom[0].gpu_data,
                       bottom[1].gpu_data, self.target_loss.mutable_gpu_data,
                       self.counted.mutable_gpu_data, *ignore_args(self.ignore_label))
        self.launch("loss_reduce", 1, REDUCE_THREADS, np.int32(bottom[0].count),
                    self.target_loss.gpu_data, self.counted.gpu_data, top[0].mutable_gpu_data,
                    self.norm_blob.mutable_gpu_data, np.float32(self._fixed_normalizer(bottom)),
                    np.float32(1))

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.launch_1d("sigmoid_cross_entropy_loss_backward", bottom[0].count, bottom[0].gpu_data,
                       bottom[1].gpu_data, top[0].gpu_diff, self.norm_blob.gpu_data,
                       bottom[0].mutable_gpu_diff, *ignore_args(self.ignore_label))
