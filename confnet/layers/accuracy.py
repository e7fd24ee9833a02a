"""Accuracy: the fraction of predictions whose true class is among the top k scores."""

import numpy as np

from .base import Layer
from .registry import register_layer
from .softmax import split_at_axis
from .softmax_loss import REDUCE_THREADS, check_label_count, ignore_args, ignore_label, read_labels


@register_layer("Accuracy")
class Accuracy(Layer):
    """A position (outer index, inner index) around accuracy_param.axis is correct when fewer than
    top_k other classes score at least as high as the labelled one (ties count against it);
    positions labelled accuracy_param.ignore_label are not counted.

    bottom[0]: scores, shape (outer.., C, inner..).   bottom[1]: outer*inner labels in 0..C-1.
    top[0]: scalar, correct / counted (0 when nothing is counted).
    top[1] (optional): shape (C,), per class: correct / counted among positions with that label
    (0 for a class that does not occur).
    backward: none; no gradient flows to either bottom.
    On the device a counted label outside 0..C-1 cannot be reported: the accuracy reads NaN.
    """

    params = ("accuracy_param",)
    num_bottom = 2
    min_top, max_top = 1, 2
    has_gpu = True
    kernels = "accuracy.cu"

    def layer_setup(self, bottom, top):
        ap = self.param.accuracy_param
        self.top_k = int(ap.top_k)
        self.ignore_label = ignore_label(ap)
        self.hit, self.counted = self.new_blob(), self.new_blob()   # device, per position

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        self.axis = bottom[0].canonical_axis(self.param.accuracy_param.axis)
        self.dims = split_at_axis(bottom[0], self.axis)
        check_label_count(self, bottom[1], self.dims)
        self.require(self.top_k <= self.dims[1],
                     f"top_k {self.top_k} is more than the number of classes {self.dims[1]}")
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((self.dims[1],))
        for blob in (self.hit, self.counted):
            blob.reshape((bottom[1].count,))

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.dims)
        labels, valid = read_labels(self, bottom[1], self.dims, self.ignore_label)
        true_score = np.take_along_axis(x, labels[:, None, :], axis=1)
        rivals = (x >= true_score).sum(axis=1) - 1  # the labelled class itself is counted once
        correct = (rivals < self.top_k)[valid]
        labels = labels[valid]
        top[0].data[...] = correct.mean() if correct.size else 0.0
        if len(top) > 1:
            classes = self.dims[1]
            seen = np.bincount(labels, minlength=classes)
            hits = np.bincount(labels, weights=correct, minlength=classes)
            top[1].data[...] = np.where(seen > 0, hits / np.maximum(seen, 1), 0.0)

    def backward_cpu(self, top, propagate_down, bottom):
        if any(propagate_down):
            self.fail("has no gradient; do not give it a loss_weight or back-propagate into it")

    def forward_gpu(self, bottom, top):
        outer, channels, inner = self.dims
        labels = bottom[1].gpu_data
        self.launch_1d("accuracy_forward", outer * inner, bottom[0].gpu_data, labels,
                       self.hit.mutable_gpu_data, self.counted.mutable_gpu_data,
                       np.int32(channels), np.int32(inner), np.int32(self.top_k),
                       *ignore_args(self.ignore_label))
        # Block 0 sums every position into top[0]; block 1 + k the positions of class k.
        per_class = len(top) > 1
        self.launch("accuracy_reduce", 1 + channels * per_class, REDUCE_THREADS,
                    np.int32(outer * inner), self.hit.gpu_data, self.counted.gpu_data, labels,
                    top[0].mutable_gpu_data, top[1].mutable_gpu_data if per_class else 0)

    backward_gpu = backward_cpu
