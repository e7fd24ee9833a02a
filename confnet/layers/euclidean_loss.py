"""EuclideanLoss: half the mean squared distance between two blobs."""

import numpy as np

from ..gpu import blas
from .base import LossLayer
from .registry import register_layer


@register_layer("EuclideanLoss")
class EuclideanLoss(LossLayer):
    """loss = 1 / (2N) * sum_n sum_k (a[n, k] - b[n, k])^2

    bottom[0]: a, shape (N, ...).   bottom[1]: b, N items with the same count each (a and b may
    differ in shape beyond the first axis, as in Caffe).   top[0]: the scalar loss.
    backward (to both bottoms, force_backward included): da = w / N * (a - b), db = -da,
    w = top[0].diff. loss_param is not read (the loss always divides by N).
    On the device (cuda/loss.cu) a - b is kept in a layer-owned blob and the sum of squares is
    a deterministic device reduction written straight into top[0].
    """

    params = ()
    num_bottom = 2
    has_gpu = True
    kernels = "loss.cu"

    def layer_setup(self, bottom, top):
        self.delta_blob = self.new_blob()   # a - b on the device

    def allow_force_backward(self, bottom_index):
        return True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.require(bottom[0].count_range(1) == bottom[1].count_range(1),
                     f"bottom[0] {bottom[0].shape} and bottom[1] {bottom[1].shape} need the same "
                     "number of values per item")
        self.delta_blob.reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        self.delta = bottom[0].data - bottom[1].data.reshape(bottom[0].shape)
        top[0].data[...] = 0.5 * float((self.delta * self.delta).sum()) / bottom[0].shape[0]

    def backward_cpu(self, top, propagate_down, bottom):
        scale = float(top[0].diff.flat[0]) / bottom[0].shape[0]
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                bottom[i].diff[...] = (sign * scale * self.delta).reshape(bottom[i].shape)

    def forward_gpu(self, bottom, top):
        n, delta = bottom[0].count, self.delta_blob.mutable_gpu_data
        self.launch_1d("euclidean_loss_forward", n, bottom[0].gpu_data, bottom[1].gpu_data, delta)
        loss = top[0].mutable_gpu_data
        blas.dot(n, delta, delta, loss)
        blas.scale(1, 0.5 / bottom[0].shape[0], loss)

    def backward_gpu(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                self.launch_1d("euclidean_loss_backward", bottom[i].count,
                               self.delta_blob.gpu_data, top[0].gpu_diff,
                               np.float32(sign / bottom[0].shape[0]), bottom[i].mutable_gpu_diff)
