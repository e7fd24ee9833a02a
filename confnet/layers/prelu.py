"""PReLU: a ReLU whose negative slope is learned, per channel or shared."""

import numpy as np

from ..gpu.launch import THREADS_1D
from ..proto import confnet_pb2 as pb
from .neuron import Neuron
from .registry import register_layer


@register_layer("PReLU")
class PReLU(Neuron):
    """y = max(x, 0) + a_c * min(x, 0), c the channel (axis 1) of the element.

    a: a learned parameter of shape (C,), or () with channel_shared; filled by ``filler``
    (default constant 0.25).
    bottom: 1 blob of at least 2 axes (N, C, ...).   top: same shape (may be in place; x is then
    kept for backward).
    backward: dx = dy where x > 0, else a_c * dy; da_c += sum of dy * x over the elements of
    channel c with x <= 0 (over all elements when shared: the sum of the channel sums).
    """

    params = ("prelu_param",)
    has_gpu = True
    kernels = "neuron.cu"

    def layer_setup(self, bottom, top):
        p = self.param.prelu_param
        self.require(bottom[0].num_axes >= 2,
                     f"needs an input of at least 2 axes (N, C, ...), got shape {bottom[0].shape}")
        self.shared = p.channel_shared
        self.channels = bottom[0].shape[1]
        filler = p.filler if p.HasField("filler") else pb.FillerParameter(type="constant",
                                                                           value=0.25)
        self.add_param_blob(() if self.shared else (self.channels,), filler)
        # device, shared slope: the channel sums, added up by a second pass
        self.channel_sums = self.new_blob((self.channels,)) if self.shared else None

    def reshape(self, bottom, top):
        x = bottom[0]
        self.require(x.num_axes >= 2 and x.shape[1] == self.channels,
                     f"input shape {x.shape} does not have the {self.channels} channels "
                     "(axis 1) the slopes were made for")
        top[0].reshape_like(x)

    def _view(self, array):
        """(N, C, spatial) view of an input-shaped array."""
        return array.reshape(array.shape[0], self.channels, -1)

    def _slope(self):
        return self.blobs[0].data.reshape(1, -1, 1)

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        x = self._view(bottom[0].data)
        self._view(top[0].data)[...] = np.where(x > 0, x, x * self._slope())

    def backward_cpu(self, top, propagate_down, bottom):
        x = self._view(self.kept_input(bottom, top).data)
        dy = self._view(top[0].diff)
        negative = x <= 0
        da = np.where(negative, dy * x, 0).sum(axis=(0, 2))
        self.blobs[0].diff += da.sum() if self.shared else da
        if propagate_down[0]:
            self._view(bottom[0].diff)[...] = np.where(negative, dy * self._slope(), dy)

    # -- device ------------------------------------------------------------------------------
    def _geometry(self, blob):
        """(outer, inner) of an input-shaped blob viewed as (outer, channels, inner)."""
        outer = blob.shape[0]
        return outer, blob.count // max(outer * self.channels, 1)

    def _slope_args(self, blob):
        """(channels, inner) of the elementwise kernels, which read slope[(i / inner) %
        channels]: a shared slope is the one channel of a one-channel view."""
        _, inner = self._geometry(blob)
        return np.int32(1 if self.shared else self.channels), np.int32(inner)

    def forward_gpu(self, bottom, top):
        self.keep_input(bottom, top)
        x = bottom[0]
        self.launch_1d("prelu_forward", x.count, *self._slope_args(x), x.gpu_data,
                       top[0].mutable_gpu_data, self.blobs[0].gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        x, dy = self.kept_input(bottom, top), top[0]
        # The slope gradient first: in place, the bottom gradient overwrites dy.
        if dy.count:
            self._slope_gradient_gpu(x, dy)
        if propagate_down[0]:
            self.launch_1d("prelu_backward", dy.count, *self._slope_args(dy), dy.gpu_diff,
                           x.gpu_data, self.blobs[0].gpu_data, bottom[0].mutable_gpu_diff)

    def _slope_gradient_gpu(self, x, dy):
        """da_c += channel c's sum, one block per channel (a fixed order of additions, no
        atomics); a shared slope gets the channel sums in a buffer first, then one block adds
        them up in channel order, as the host does."""
        outer, inner = self._geometry(dy)
        if self.shared:
            self.channel_sums.set_data(0)
            sums = self.channel_sums.mutable_gpu_data
        else:
            sums = self.blobs[0].mutable_gpu_diff
        self.launch("prelu_backward_slope", self.channels, THREADS_1D, np.int32(outer),
                    np.int32(self.channels), np.int32(inner), dy.gpu_diff, x.gpu_data, sums)
        if self.shared:
            self.launch("prelu_backward_slope_shared", 1, THREADS_1D, np.int32(self.channels),
                        self.channel_sums.gpu_data, self.blobs[0].mutable_gpu_diff)
