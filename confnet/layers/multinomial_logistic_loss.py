"""MultinomialLogisticLoss: the negative log-likelihood of given class probabilities."""

import numpy as np

from .base import LossLayer
from .registry import register_layer
from .softmax_loss import check_label_count, read_labels

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
    """

    params = ()
    num_bottom = 2

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        n = bottom[0].shape[0]
        self.dims = (n, bottom[0].count // n if n else 0, 1)
        check_label_count(self, bottom[1], self.dims)

    def _label_probs(self, bottom):
        p = bottom[0].data.reshape(self.dims[:2])
        self.labels, _ = read_labels(self, bottom[1], self.dims)
        picked = np.take_along_axis(p, self.labels, axis=1)
        return np.maximum(picked, log_threshold(self.dtype))

    def forward_cpu(self, bottom, top):
        top[0].data[...] = -float(np.log(self._label_probs(bottom)).sum()) / self.dims[0]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            self.fail("cannot back-propagate to the labels (bottom[1])")
        if not propagate_down[0]:
            return
        scale = -float(top[0].diff.flat[0]) / self.dims[0]
        dp = np.zeros(self.dims[:2], self.dtype)
        np.put_along_axis(dp, self.labels, scale / self._label_probs(bottom), axis=1)
        bottom[0].diff[...] = dp.reshape(bottom[0].shape)
