"""MVN: mean-variance normalization of each image (and channel)."""

import numpy as np

from .neuron import Neuron
from .registry import register_layer


@register_layer("MVN")
class MVN(Neuron):
    """y = (x - mean(x)) / (std(x) + eps) over each group, or y = x - mean(x) when
    normalize_variance is false.

    A group is one (image, channel) pair: the elements x[n, c, ...]; with across_channels one
    image: x[n, ...]. std is the biased standard deviation sqrt(mean((x - mean)^2)); eps is added
    to it after the square root, as in Caffe.

    bottom: 1 blob (N, C, ...) of at least 1 axis.   top: same shape (may be in place).
    backward, per group of m elements (s = std, d = s + eps):
      normalize_variance: dx = (dy - mean(dy)) / d - y * mean(dy * y) / s   (0 where s = 0)
      otherwise:          dx = dy - mean(dy)
    Device: cuda/batch_norm.cu, one block per group (deterministic block reductions).
    """

    params = ("mvn_param",)
    has_gpu = True
    kernels = "batch_norm.cu"

    def layer_setup(self, bottom, top):
        p = self.param.mvn_param
        self.normalize_variance = p.normalize_variance
        self.across_channels = p.across_channels
        self.eps = float(p.eps)
        # Device buffers kept for backward: y (a later in-place layer may overwrite the top)
        # and std per group.
        self.y_blob, self.std_blob = self.new_blob(), self.new_blob()

    def reshape(self, bottom, top):
        x = bottom[0]
        self.require(x.num_axes >= 1, "needs an input with at least one axis")
        groups = x.shape[0] if self.across_channels or x.num_axes < 2 else x.count_range(0, 2)
        self.groups = (groups, x.count // groups if groups else 0)
        top[0].reshape_like(x)
        if self.normalize_variance:
            self.y_blob.reshape_like(x)
            self.std_blob.reshape((groups,))

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.groups)
        centred = x - x.mean(axis=1, keepdims=True)
        if self.normalize_variance:
            self.std = np.sqrt(np.mean(centred * centred, axis=1, keepdims=True))
            centred /= self.std + self.eps
            # Kept because a later in-place layer may overwrite the top.
            self.y = centred
        top[0].data.reshape(self.groups)[...] = centred

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.groups)
        dx = dy - dy.mean(axis=1, keepdims=True)
        if self.normalize_variance:
            dx /= self.std + self.eps
            dyy = np.mean(dy * self.y, axis=1, keepdims=True)
            dx -= self.y * np.divide(dyy, self.std, out=np.zeros_like(dyy), where=self.std > 0)
        bottom[0].diff.reshape(self.groups)[...] = dx

    def _launch(self, name, *args):
        """``name`` with one block per group."""
        self.launch_rows(name, self.groups[0],
                         *(np.int32(d) for d in self.groups), *args, np.float32(self.eps),
                         np.int32(self.normalize_variance))

    def forward_gpu(self, bottom, top):
        self._launch("mvn_forward", bottom[0].gpu_data, top[0].mutable_gpu_data,
                     self.y_blob.mutable_gpu_data, self.std_blob.mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self._launch("mvn_backward", top[0].gpu_diff, self.y_blob.gpu_data,
                         self.std_blob.gpu_data, bottom[0].mutable_gpu_diff)
