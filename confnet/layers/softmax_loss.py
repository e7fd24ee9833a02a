"""SoftmaxWithLoss: softmax followed by the multinomial logistic loss, fused for stability."""

import numpy as np

from .base import LossLayer
from .loss_normalizer import VALID, normalization_mode, normalizer
from .registry import register_layer
from .softmax import softmax, softmax_backward, softmax_backward_gpu, softmax_gpu, split_at_axis

_FLT_MIN = float(np.finfo(np.float32).tiny)  # Caffe clamps probabilities at FLT_MIN for any Dtype

# The single-block sums of the loss-family kernels (softmax_loss_reduce, accuracy_reduce): a
# multiple of the warp size, enough threads to stream a batch's positions in a few passes.
REDUCE_THREADS = 256


def check_label_count(layer, label_blob, dims):
    """One label per prediction: ``dims`` is the prediction's (outer, channels, inner)."""
    outer, _, inner = dims
    layer.require(label_blob.count == outer * inner,
                  f"{label_blob.count} labels for {outer * inner} predictions (label shape "
                  f"{label_blob.shape}); for predictions (N, C, H, W) and axis 1, give N*H*W "
                  "labels with values in 0..C-1")


def read_labels(layer, label_blob, dims, ignore_label=None):
    """The labels in ``label_blob`` as integers of shape (outer, inner) (truncated, as C's int
    cast), ignored ones replaced by 0, and the mask of those that count. ``dims`` is the
    prediction's (outer, channels, inner); a counted label outside 0..channels-1 is an error."""
    outer, channels, inner = dims
    labels = label_blob.data.reshape(outer, inner).astype(np.int64)
    valid = labels != ignore_label if ignore_label is not None else np.ones(labels.shape, bool)
    bad = valid & ((labels < 0) | (labels >= channels))
    if bad.any():
        first = np.flatnonzero(bad)[0]
        index = tuple(int(i) for i in np.unravel_index(first, label_blob.shape))
        layer.fail(f"label {labels.flat[first]} at index {index} of bottom[1] is outside "
                   f"0..{channels - 1} ({channels} classes)")
    return np.where(valid, labels, 0), valid


def ignore_label(message):
    """The ``ignore_label`` of a Loss/AccuracyParameter, or None when unset."""
    return message.ignore_label if message.HasField("ignore_label") else None


def ignore_args(label):
    """(has_ignore, ignore_label) as the kernels' int arguments for ``label`` (None: none)."""
    return np.int32(label is not None), np.int32(label or 0)


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLoss(LossLayer):
    """p = softmax(x) over softmax_param.axis (default 1);
    loss = -sum over counted positions of log(max(p[label], FLT_MIN)) / normalizer.

    bottom[0]: scores, shape (outer.., C, inner..) around the axis.
    bottom[1]: labels, outer*inner integer values in 0..C-1 (or loss_param.ignore_label, which
               is not counted and gets no gradient).
    top[0]: the scalar loss.   top[1] (optional, loss weight 0): the probabilities p.
    normalizer (loss_param.normalization): VALID = number of counted labels (default), FULL =
    outer*inner, BATCH_SIZE = outer, NONE = 1; at least 1. The legacy loss_param.normalize, when
    normalization is unset, means VALID (true) or BATCH_SIZE (false).
    backward: dx = w / normalizer * (p - onehot(label)) at counted positions, 0 at ignored ones,
    w = top[0].diff. Unlike Caffe, a gradient arriving in top[1] is back-propagated too (it is
    zero unless something consumes the probabilities with a gradient).
    On the device a counted label outside 0..C-1 cannot be reported: the loss becomes NaN
    (cuda/softmax.cu), which the solver stops on.
    """

    params = ("softmax_param", "loss_param")
    num_bottom = 2
    max_top = 2
    has_gpu = True
    kernels = "softmax.cu"

    def layer_setup(self, bottom, top):
        lp = self.param.loss_param
        self.ignore_label = ignore_label(lp)
        self.normalization = normalization_mode(lp, default=VALID)
        # Device buffers: p, and per position the loss and whether it counts; the normalizer.
        self.prob_blob, self.position_loss, self.counted, self.norm = (
            self.new_blob(), self.new_blob(), self.new_blob(), self.new_blob((1,)))

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis = bottom[0].canonical_axis(self.param.softmax_param.axis)
        self.dims = split_at_axis(bottom[0], self.axis)
        check_label_count(self, bottom[1], self.dims)
        if len(top) > 1:
            top[1].reshape_like(bottom[0])
        self.prob_blob.reshape_like(bottom[0])
        for blob in (self.position_loss, self.counted):
            blob.reshape((bottom[1].count,))

    def normalizer(self, valid):
        outer, _, inner = self.dims
        return normalizer(self.normalization, outer, inner, int(valid.sum()))

    def forward_cpu(self, bottom, top):
        self.prob = softmax(bottom[0].data.reshape(self.dims))
        self.labels, self.valid = read_labels(self, bottom[1], self.dims, self.ignore_label)
        p = np.take_along_axis(self.prob, self.labels[:, None, :], axis=1)[:, 0, :]
        loss = -np.log(np.maximum(p, _FLT_MIN))[self.valid].sum()
        top[0].data[...] = loss / self.normalizer(self.valid)
        if len(top) > 1:
            top[1].data[...] = self.prob.reshape(top[1].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = self.prob.copy()
        onehot = np.take_along_axis(dx, self.labels[:, None, :], axis=1) - 1
        np.put_along_axis(dx, self.labels[:, None, :], onehot, axis=1)
        dx *= self.valid[:, None, :]
        dx *= float(top[0].diff.flat[0]) / self.normalizer(self.valid)
        if len(top) > 1:
            dx += softmax_backward(self.prob, top[1].diff.reshape(self.dims))
        bottom[0].diff[...] = dx.reshape(bottom[0].shape)

    def forward_gpu(self, bottom, top):
        outer, channels, inner = self.dims
        softmax_gpu(self, self.dims, bottom[0].gpu_data, self.prob_blob.mutable_gpu_data)
        self.launch_1d("softmax_loss_forward", outer * inner, self.prob_blob.gpu_data,
                       bottom[1].gpu_data, self.position_loss.mutable_gpu_data,
                       self.counted.mutable_gpu_data, np.int32(channels), np.int32(inner),
                       *ignore_args(self.ignore_label))
        # VALID counts on the device (-1 says so); the other normalizers are known here.
        fixed = -1.0 if self.normalization == VALID else normalizer(
            self.normalization, outer, inner, 0)
        self.launch("softmax_loss_reduce", 1, REDUCE_THREADS, np.int32(outer * inner),
                    self.position_loss.gpu_data, self.counted.gpu_data, top[0].mutable_gpu_data,
                    self.norm.mutable_gpu_data, np.float32(fixed))
        if len(top) > 1:
            top[1].copy_from(self.prob_blob)

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        _, channels, inner = self.dims
        dx = bottom[0].mutable_gpu_diff
        if len(top) > 1:   # the probability top's gradient first; the loss's is added to it
            softmax_backward_gpu(self, self.dims, self.prob_blob.gpu_data, top[1].gpu_diff, dx)
        self.launch_1d("softmax_loss_backward", bottom[0].count, self.prob_blob.gpu_data,
                       bottom[1].gpu_data, top[0].gpu_diff, self.norm.gpu_data, dx,
                       np.int32(channels), np.int32(inner), *ignore_args(self.ignore_label),
                       np.int32(len(top) > 1))
