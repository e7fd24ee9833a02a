"""BatchNorm: normalise each channel by batch statistics (training) or stored ones (testing)."""

import numpy as np

from .base import TEST
from .neuron import Neuron
from .registry import register_layer


@register_layer("BatchNorm")
class BatchNorm(Neuron):
    """y = (x - mean_c) / sqrt(var_c + eps) for every element of channel c (axis 1).

    Statistics of channel c are over the N * spatial elements of that channel (over the whole
    blob for a 1-axis input). There is no learned scale or shift: Caffe puts a Scale layer
    (bias_term: true) after this one.

    Three parameter blobs hold running sums, as in Caffe: [0] mean (C,), [1] variance (C,),
    [2] the scale factor (1,). They are statistics, not weights: set up forces lr_mult 0 for
    them (adding ``param { lr_mult: 0 }`` entries to the layer's own LayerParameter when the
    prototxt has none, refusing any other lr_mult), so the solver leaves them alone.

    use_global_stats (default: true in TEST, false in TRAIN):
      true:  mean = blobs[0] / blobs[2][0], var = blobs[1] / blobs[2][0] (0 when it is 0).
      false: mean, var = the biased batch statistics; then, with f = moving_average_fraction
             and m = N * spatial elements per channel,
               blobs[2] = f * blobs[2] + 1
               blobs[0] = f * blobs[0] + mean
               blobs[1] = f * blobs[1] + var * m / (m - 1)   (m / (m - 1) taken as 1 when m = 1)

    bottom: 1 blob (N, C, ...).   top: same shape (may be in place).
    backward (std = sqrt(var + eps), means over the elements of a channel):
      use_global_stats: dx = dy / std
      otherwise:        dx = (dy - mean(dy) - mean(dy * y) * y) / std
    The statistics get no gradient.

    Device: cuda/batch_norm.cu, one block per channel reduces the statistics (deterministic
    block reductions) and writes the channel's outputs; the running sums are updated there too.
    """

    params = ("batch_norm_param",)
    has_gpu = True
    kernels = "batch_norm.cu"

    def layer_setup(self, bottom, top):
        p = self.param.batch_norm_param
        self.fraction = float(p.moving_average_fraction)
        self.eps = float(p.eps)
        self.use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                                 else self.phase == TEST)
        self.require(bottom[0].num_axes >= 1, "needs an input with at least one axis")
        self.channels = bottom[0].shape[1] if bottom[0].num_axes > 1 else 1
        for shape in ((self.channels,), (self.channels,), (1,)):
            self.blobs.append(self.new_blob(shape))
        # Device buffers kept for backward: y (a later in-place layer may overwrite the top)
        # and std per channel.
        self.y_blob, self.std_blob = self.new_blob(), self.new_blob((self.channels,))
        self._fix_learning_rates()

    def _fix_learning_rates(self):
        specs = self.param.param
        for i in range(len(self.blobs)):
            if i == len(specs):
                specs.add(lr_mult=0)
            self.require(specs[i].lr_mult == 0,
                         f"param {i} has lr_mult {specs[i].lr_mult:g}, but the mean, variance "
                         "and scale factor of batch normalization are statistics, not learned "
                         "parameters: give lr_mult 0 or no param entry")

    def reshape(self, bottom, top):
        x = bottom[0]
        channels = x.shape[1] if x.num_axes > 1 else 1
        self.require(channels == self.channels,
                     f"input shape {x.shape} has {channels} channels, the statistics "
                     f"{self.channels}")
        top[0].reshape_like(x)
        self.dims = (x.shape[0], self.channels, x.count_range(2))   # the (N, C, spatial) view
        self.y_blob.reshape_like(x)

    def _view(self, array):
        """(N, C, spatial) view of an input-shaped array."""
        return array.reshape(array.shape[0], self.channels, -1)

    def forward_cpu(self, bottom, top):
        x = self._view(bottom[0].data)
        if self.use_global_stats:
            factor = self.blobs[2].data[0]
            factor = 0 if factor == 0 else 1 / factor
            mean, var = factor * self.blobs[0].data, factor * self.blobs[1].data
            centred = x - mean.reshape(1, -1, 1)
        else:
            mean = x.mean(axis=(0, 2))
            centred = x - mean.reshape(1, -1, 1)
            var = np.mean(centred * centred, axis=(0, 2))
            self._update_running_stats(mean, var, x.shape[0] * x.shape[2])
        self.std = np.sqrt(var + self.eps).reshape(1, -1, 1)
        centred /= self.std
        # Kept because a later in-place layer (Scale, ReLU) may overwrite the top.
        self.y = centred
        self._view(top[0].data)[...] = centred

    def _update_running_stats(self, mean, var, m):
        mean_sum, var_sum, factor = (blob.data for blob in self.blobs)
        factor *= self.fraction
        factor += 1
        mean_sum *= self.fraction
        mean_sum += mean
        var_sum *= self.fraction
        var_sum += var * (m / (m - 1) if m > 1 else 1)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = self._view(top[0].diff)
        if self.use_global_stats:
            dx = dy / self.std
        else:
            y = self.y
            dx = (dy - dy.mean(axis=(0, 2), keepdims=True)
                  - y * np.mean(dy * y, axis=(0, 2), keepdims=True)) / self.std
        self._view(bottom[0].diff)[...] = dx

    # -- device ----------------------------------------------------------------------------------
    def _launch(self, name, *args):
        """``name`` with one block per channel over the (N, C, spatial) view."""
        self.launch_rows(name, self.channels,
                         *(np.int32(d) for d in self.dims), *args)

    def forward_gpu(self, bottom, top):
        m = self.dims[0] * self.dims[2]
        mean_sum, var_sum, factor = self.blobs
        self._launch("batch_norm_forward", bottom[0].gpu_data, top[0].mutable_gpu_data,
                     self.y_blob.mutable_gpu_data, mean_sum.mutable_gpu_data,
                     var_sum.mutable_gpu_data, factor.mutable_gpu_data,
                     self.std_blob.mutable_gpu_data, np.float32(self.eps),
                     np.float32(self.fraction), np.float32(m / (m - 1) if m > 1 else 1),
                     np.int32(self.use_global_stats))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self._launch("batch_norm_backward", top[0].gpu_diff, self.y_blob.gpu_data,
                         self.std_blob.gpu_data, bottom[0].mutable_gpu_diff,
                         np.int32(self.use_global_stats))
