"""ContrastiveLoss: pulls similar pairs together and pushes dissimilar ones beyond a margin."""

import numpy as np

from .base import LossLayer
from .registry import register_layer
from .softmax_loss import REDUCE_THREADS


@register_layer("ContrastiveLoss")
class ContrastiveLoss(LossLayer):
    """With d_n = ||a_n - b_n||_2, a pair is similar when int(y_n) != 0 (C's cast):
        loss = 1/(2N) * sum_n ( d_n^2                    for similar pairs
                              max(margin - d_n, 0)^2    for dissimilar ones )
    or, with contrastive_loss_param.legacy_version, max(margin - d_n^2, 0) for dissimilar pairs.

    bottom[0]: a, shape (N, C) or (N, C, 1, 1).   bottom[1]: b, the same.
    bottom[2]: y, N values (shape (N,) or (N, 1, 1, 1)).   top[0]: the scalar loss.
    backward (to a and b, not y): with s = w / N (w = top[0].diff),
        similar pairs:     da_n = s (a_n - b_n)
        dissimilar pairs:  da_n = -s (a_n - b_n) * (margin - d_n) / (d_n + 1e-4)  if margin > d_n
                           (legacy: -s (a_n - b_n)  if margin > d_n^2), else 0;
        db_n = -da_n. The 1e-4 is Caffe's guard against d_n = 0, so the gradient is that much
    off the exact derivative of the loss. loss_param is not read (the loss always divides by N).
    On the device (cuda/loss.cu) a - b, d_n^2 and the pair terms are layer-owned blobs.
    """

    params = ("contrastive_loss_param",)
    num_bottom = 3
    has_gpu = True
    kernels = "loss.cu"

    def layer_setup(self, bottom, top):
        p = self.param.contrastive_loss_param
        self.margin = float(p.margin)
        self.legacy = p.legacy_version
        self.delta_blob, self.dist_sq_blob, self.pair_loss = (
            self.new_blob(), self.new_blob(), self.new_blob())

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        a, b, y = bottom
        for i, blob in enumerate((a, b)):
            self.require(blob.num_axes >= 2 and all(d == 1 for d in blob.shape[2:]),
                         f"bottom[{i}] has shape {blob.shape}; it must be (N, C) or (N, C, 1, 1)")
        self.require(a.shape[1] == b.shape[1],
                     f"bottom[0] {a.shape} and bottom[1] {b.shape} need the same channels")
        self.require(y.count == a.shape[0],
                     f"bottom[2] {y.shape} needs one similarity value per pair ({a.shape[0]})")
        self.delta_blob.reshape_like(a)
        for blob in (self.dist_sq_blob, self.pair_loss):
            blob.reshape((a.shape[0],))

    def forward_cpu(self, bottom, top):
        n = bottom[0].shape[0]
        self.delta = bottom[0].data.reshape(n, -1) - bottom[1].data.reshape(n, -1)
        self.dist_sq = (self.delta * self.delta).sum(axis=1)
        self.similar = bottom[2].data.reshape(-1).astype(np.int64) != 0
        if self.legacy:
            far = np.maximum(self.margin - self.dist_sq, 0.0)
        else:
            far = np.maximum(self.margin - np.sqrt(self.dist_sq), 0.0) ** 2
        total = np.where(self.similar, self.dist_sq, far).sum()
        top[0].data[...] = float(total) / n / 2

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[2]:
            self.fail("cannot back-propagate to the similarity labels (bottom[2])")
        n = bottom[0].shape[0]
        scale = float(top[0].diff.flat[0]) / n
        if self.legacy:
            gap = self.margin - self.dist_sq
            far = np.where(gap > 0, -1.0, 0.0)
        else:
            dist = np.sqrt(self.dist_sq)
            gap = self.margin - dist
            far = np.where(gap > 0, -gap / (dist + 1e-4), 0.0)
        da = scale * np.where(self.similar, 1.0, far)[:, None] * self.delta
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                bottom[i].diff[...] = (sign * da).reshape(bottom[i].shape)

    def forward_gpu(self, bottom, top):
        n, channels = bottom[0].shape[:2]
        self.launch_1d("contrastive_loss_forward", n, bottom[0].gpu_data, bottom[1].gpu_data,
                       bottom[2].gpu_data, self.delta_blob.mutable_gpu_data,
                       self.dist_sq_blob.mutable_gpu_data, self.pair_loss.mutable_gpu_data,
                       np.int32(channels), np.float32(self.margin), np.int32(self.legacy))
        self.launch("loss_reduce", 1, REDUCE_THREADS, np.int32(n), self.pair_loss.gpu_data, 0,
                    top[0].mutable_gpu_data, 0, np.float32(max(n, 1)), np.float32(0.5))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[2]:
            self.fail("cannot back-propagate to the similarity labels (bottom[2])")
        n, channels = bottom[0].shape[:2]
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                self.launch_1d("contrastive_loss_backward", bottom[i].count,
                               self.delta_blob.gpu_data, self.dist_sq_blob.gpu_data,
                               bottom[2].gpu_data, top[0].gpu_diff, bottom[i].mutable_gpu_diff,
                               np.int32(channels), np.float32(self.margin),
                               np.int32(self.legacy), np.float32(sign / n))
