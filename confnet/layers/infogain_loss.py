"""InfogainLoss: a softmax loss in which every (true class, predicted class) pair has a weight."""

from functools import partial
from types import SimpleNamespace

import numpy as np

from ..gpu.launch import launch, launch_1d
from ..proto.io import read_binaryproto
from .base import LossLayer
from .loss_normalizer import VALID, normalization_mode, normalizer
from .multinomial_logistic_loss import log_threshold
from .registry import register_layer
from .softmax import softmax, softmax_backward, softmax_backward_gpu, softmax_gpu, split_at_axis
from .softmax_loss import (
    REDUCE_THREADS,
    check_label_count,
    ignore_args,
    ignore_label,
    read_labels,
)

# The softmax helpers launch through an object's launch/launch_1d: these run cuda/softmax.cu's.
_SOFTMAX = SimpleNamespace(launch=partial(launch, "softmax.cu"),
                           launch_1d=partial(launch_1d, "softmax.cu"))


@register_layer("InfogainLoss")
class InfogainLoss(LossLayer):
    """p = softmax(x) over infogain_loss_param.axis (default 1), then
        loss = -sum over counted positions of sum_l H[label, l] log(max(p_l, 1e-20)) / normalizer
    where H is the C x C infogain matrix (H = identity gives SoftmaxWithLoss).

    bottom[0]: scores x, shape (outer.., C, inner..) around the axis.
    bottom[1]: outer*inner labels with integer values in 0..C-1 (or loss_param.ignore_label,
               which is not counted and gets no gradient).
    bottom[2] (optional): H, C*C values; without it H is read from the BlobProto file
               infogain_loss_param.source (giving both is an error).
    top[0]: the scalar loss.   top[1] (optional, loss weight 0): the probabilities p.
    normalizer (loss_param.normalization, default VALID): FULL = outer*inner, VALID = number of
    counted labels, BATCH_SIZE = outer, NONE = 1; at least 1. The deprecated normalize is an
    error, as in Caffe.
    backward: dx_l = w / normalizer * (p_l * sum_m H[label, m] - H[label, l]) at counted
    positions, 0 at ignored ones, w = top[0].diff (the exact gradient where no p_l is below
    1e-20). No gradient to the labels or to H. Unlike Caffe, a gradient arriving in top[1] is
    back-propagated too (it is zero unless something consumes p with a gradient).
    On the device (cuda/loss.cu; the softmax from cuda/softmax.cu) the VALID count is taken there
    too, and a counted label outside 0..C-1 makes the loss NaN instead of an error.
    """

    params = ("infogain_loss_param", "loss_param")
    max_top = 2
    has_gpu = True
    kernels = "loss.cu"

    def layer_setup(self, bottom, top):
        lp = self.param.loss_param
        self.require(not lp.HasField("normalize"),
                     "loss_param.normalize is deprecated for InfogainLoss; use normalization")
        self.ignore_label = ignore_label(lp)
        self.normalization = normalization_mode(lp, default=VALID)
        source = self.param.infogain_loss_param.source
        if len(bottom) == 3:
            self.require(not source, "H is given both as bottom[2] and as infogain_loss_param."
                         f"source ('{source}'); give only one")
            self.infogain = None
        else:
            self.require(source, "needs the infogain matrix H: set infogain_loss_param.source "
                         "to a .binaryproto file or give it as a third bottom")
            self.infogain = read_binaryproto(source).astype(self.dtype)
        # Device buffers: p, per position the loss and whether it counts, the normalizer, the
        # row sums of H, and H itself when it comes from the file (copied over once).
        self.prob_blob, self.position_loss, self.counted, self.norm_blob, self.row_sums = (
            self.new_blob(), self.new_blob(), self.new_blob(), self.new_blob((1,)),
            self.new_blob())
        if self.infogain is not None:
            self.infogain_blob = self.new_blob(self.infogain.shape)
            self.infogain_blob.set_data(self.infogain)

    input_names = {1: "labels", 2: "infogain matrix"}

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis = bottom[0].canonical_axis(self.param.infogain_loss_param.axis)
        self.dims = split_at_axis(bottom[0], self.axis)
        check_label_count(self, bottom[1], self.dims)
        classes = self.dims[1]
        h_count = bottom[2].count if len(bottom) == 3 else self.infogain.size
        self.require(h_count == classes * classes,
                     f"H has {h_count} values; {classes} classes need {classes}x{classes}")
        if len(top) > 1:
            top[1].reshape_like(bottom[0])
        self.prob_blob.reshape_like(bottom[0])
        for blob in (self.position_loss, self.counted):
            blob.reshape((bottom[1].count,))
        self.row_sums.reshape((classes,))

    def _matrix(self, bottom):
        h = bottom[2].data if len(bottom) == 3 else self.infogain
        return h.reshape(self.dims[1], self.dims[1])

    def forward_cpu(self, bottom, top):
        self.prob = softmax(bottom[0].data.reshape(self.dims))
        self.labels, self.valid = read_labels(self, bottom[1], self.dims, self.ignore_label)
        weights = self._matrix(bottom)[self.labels]                      # (outer, inner, C)
        logp = np.log(np.maximum(self.prob, log_threshold(self.dtype)))  # (outer, C, inner)
        per_position = np.einsum("oic,oci->oi", weights, logp)
        self.norm = normalizer(self.normalization, self.dims[0], self.dims[2],
                               int(self.valid.sum()))
        top[0].data[...] = -float(per_position[self.valid].sum()) / self.norm
        if len(top) > 1:
            top[1].data[...] = self.prob.reshape(top[1].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        h = self._matrix(bottom)
        weights = np.moveaxis(h[self.labels], 2, 1)                      # (outer, C, inner)
        row_sums = h.sum(axis=1)[self.labels][:, None, :]                # (outer, 1, inner)
        dx = self.prob * row_sums - weights
        dx *= self.valid[:, None, :]
        dx *= float(top[0].diff.flat[0]) / self.norm
        if len(top) > 1:
            dx += softmax_backward(self.prob, top[1].diff.reshape(self.dims))
        bottom[0].diff[...] = dx.reshape(bottom[0].shape)

    def _gpu_matrix(self, bottom):
        return bottom[2].gpu_data if len(bottom) == 3 else self.infogain_blob.gpu_data

    def forward_gpu(self, bottom, top):
        outer, channels, inner = self.dims
        softmax_gpu(_SOFTMAX, self.dims, bottom[0].gpu_data, self.prob_blob.mutable_gpu_data)
        self.launch_1d("infogain_loss_forward", outer * inner, self.prob_blob.gpu_data,
                       bottom[1].gpu_data, self._gpu_matrix(bottom),
                       self.position_loss.mutable_gpu_data, self.counted.mutable_gpu_data,
                       np.int32(channels), np.int32(inner), *ignore_args(self.ignore_label))
        # VALID counts on the device (-1 says so); the other normalizers are known here.
        fixed = -1.0 if self.normalization == VALID else normalizer(
            self.normalization, outer, inner, 0)
        self.launch("loss_reduce", 1, REDUCE_THREADS, np.int32(outer * inner),
                    self.position_loss.gpu_data, self.counted.gpu_data, top[0].mutable_gpu_data,
                    self.norm_blob.mutable_gpu_data, np.float32(fixed), np.float32(1))
        if len(top) > 1:
            top[1].copy_from(self.prob_blob)

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        _, channels, inner = self.dims
        h = self._gpu_matrix(bottom)
        self.launch_1d("infogain_loss_backward_row_sums", channels, h,
                       self.row_sums.mutable_gpu_data)
        dx = bottom[0].mutable_gpu_diff
        if len(top) > 1:   # the probability top's gradient first; the loss's is added to it
            softmax_backward_gpu(_SOFTMAX, self.dims, self.prob_blob.gpu_data, top[1].gpu_diff,
                                 dx)
        self.launch_1d("infogain_loss_backward", bottom[0].count, self.prob_blob.gpu_data,
                       bottom[1].gpu_data, h, self.row_sums.gpu_data, top[0].gpu_diff,
                       self.norm_blob.gpu_data, dx, np.int32(channels), np.int32(inner),
                       *ignore_args(self.ignore_label), np.int32(len(top) > 1))
