"""PReLU: a ReLU whose negative slope is learned, per channel or shared."""

import numpy as np

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
    channel c with x <= 0 (over all elements when shared).
    """

    params = ("prelu_param",)

    def layer_setup(self, bottom, top):
        p = self.param.prelu_param
        self.require(bottom[0].num_axes >= 2,
                     f"needs an input of at least 2 axes (N, C, ...), got shape {bottom[0].shape}")
        self.shared = p.channel_shared
        self.channels = bottom[0].shape[1]
        filler = p.filler if p.HasField("filler") else pb.FillerParameter(type="constant",
                                                                           value=0.25)
        self.add_param_blob(() if self.shared else (self.channels,), filler)
        self.kept = None

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
        x = self._view(bottom[0].data)
        self.kept = x.copy() if bottom[0] is top[0] else None
        self._view(top[0].data)[...] = np.where(x > 0, x, x * self._slope())

    def backward_cpu(self, top, propagate_down, bottom):
        x = self._view(bottom[0].data) if self.kept is None else self.kept
        dy = self._view(top[0].diff)
        negative = x <= 0
        da = np.where(negative, dy * x, 0).sum(axis=(0, 2))
        self.blobs[0].diff += da.sum() if self.shared else da
        if propagate_down[0]:
            self._view(bottom[0].diff)[...] = np.where(negative, dy * self._slope(), dy)
