"""MultinomialLogisticLoss: the negative log-likelihood of given class probabilities."""

import numpy as np

from .base import LossLayer
from .registry import register_layer
from .softmax_loss import REDUCE_THREADS, check_label_count, read_labels

LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD: probabilities are clamped here before the log


def log_threshold(dtype):
    """kLOG_THRESHOLD as Caffe uses it: a float constant converted to the layer's type."""
    return np.dtype(dtype).type(np.float32(LOG_THRESHOLD))


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLoss(LossLayer):
    """loss = -1/N * sum_n log(max(p[n, label[n]], 1e-20))

    bottom[0]: probabilities p, shape (N, ...), flattened to (N, K) (typically a Softmax top).
    bottom[1]: N labels with integer values in 0..K-1.   top[0]: the scalar loss.
    backward: dp[n, label[n]] = -w / N / max(p[n, label[n]], 1e-20), every other element 0,
    w = top[0].diff; no gradient to the labels. loss_param is not read (the loss always divides
    by N).
    On the device (cuda/loss.cu) a label outside 0..K-1 cannot be reported: the loss and its
    gradient become NaN, which the solver stops on.
    """

    params = ()
    num_bottom = 2
    has_gpu = True
    kernels = "loss.cu"

    def layer_setup(self, bottom, top):
        self.row_loss = self.new_blob()   # device: -log p[n, label[n]] per row

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        n = bottom[0].shape[0]
        self.dims = (n, bottom[0].count // n if n else 0, 1)
        check_label_count(self, bottom[1], self.dims)
        self.row_loss.reshape((n,))

    def _label_probs(self, bottom):
        p = bottom[0].data.reshape(self.dims[:2])
        self.labels, _ = read_labels(self, bottom[1], self.dims)
        picked = np.take_along_axis(p, self.labels, axis=1)
        return np.maximum(picked, log_threshold(self.dtype))

    def forward_cpu(self, bottom, top):
        top[0].data[...] = -float(np.log(self._label_probs(bottom)).sum()) / self.dims[0]

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        scale = -float(top[0].diff.flat[0]) / self.dims[0]
        dp = np.zeros(self.dims[:2], self.dtype)
        np.put_along_axis(dp, self.labels, scale / self._label_probs(bottom), axis=1)
        bottom[0].diff[...] = dp.reshape(bottom[0].shape)

    def forward_gpu(self, bottom, top):
        num, classes, _ = self.dims
        self.launch_1d("multinomial_logistic_loss_forward", num, bottom[0].gpu_data,
                       bottom[1].gpu_data, self.row_loss.mutable_gpu_data, np.int32(classes))
        self.launch("loss_reduce", 1, REDUCE_THREADS, np.int32(num), self.row_loss.gpu_data, 0,
                    top[0].mutable_gpu_data, 0, np.float32(max(num, 1)), np.float32(1))

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        num, classes, _ = self.dims
        self.launch_1d("multinomial_logistic_loss_backward", bottom[0].count, bottom[0].gpu_data,
                       bottom[1].gpu_data, top[0].gpu_diff, bottom[0].mutable_gpu_diff,
                       np.int32(classes), np.float32(num))
