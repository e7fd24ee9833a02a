"""DummyData: tops filled by fillers, for tests and benchmarks that need no real data."""

import numpy as np

from ..filler import fill
from ..proto import confnet_pb2 as pb
from .base import Layer
from .registry import register_layer

_LEGACY = ("num", "channels", "height", "width")


@register_layer("DummyData")
class DummyData(Layer):
    """top[i] = values of data_filler[i] (one filler for all tops, one per top, or none: zeros).

    Shapes: dummy_data_param.shape (one for all tops, or one per top), or the legacy
    num/channels/height/width lists (each with one value for all tops, or one per top).
    A top with a ``constant`` filler is filled once at setup and left alone afterwards (as in
    Caffe, so a later in-place layer's changes stay); any other filler refills its top on every
    forward, drawing from confnet.rng. No backward. On the device the values are drawn on the
    host and each refilled top gets one host -> device copy per forward.
    """

    params = ("dummy_data_param",)
    num_bottom = 0
    min_top = 1
    has_gpu = True   # forward_gpu: one host -> device copy per refilled top; no kernels

    def layer_setup(self, bottom, top):
        p = self.param.dummy_data_param
        n = len(top)
        self.require(len(p.data_filler) in (0, 1, n),
                     f"give 0, 1 or {n} (one per top) data_filler, got {len(p.data_filler)}")
        fillers = list(p.data_filler) or [pb.FillerParameter(type="constant", value=0)]
        self.fillers = fillers * n if len(fillers) == 1 else fillers
        for blob, shape in zip(top, self._shapes(p, n)):
            blob.reshape(shape)
        for blob, filler in zip(top, self.fillers):
            if filler.type == "constant":
                fill(blob.data, filler)

    def _shapes(self, p, n):
        legacy = [list(getattr(p, name)) for name in _LEGACY]
        if any(legacy):
            self.require(not p.shape, "set shape or the legacy num/channels/height/width, "
                                      "not both")
            for name, values in zip(_LEGACY, legacy):
                self.require(len(values) in (1, n),
                             f"give '{name}' once, or once per top ({n}); got {len(values)}")
            return [tuple(v[0] if len(v) == 1 else v[i] for v in legacy) for i in range(n)]
        self.require(len(p.shape) in (1, n),
                     f"give 'shape' once, or once per top ({n}); got {len(p.shape)}")
        return [tuple(p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(n)]

    def reshape(self, bottom, top):
        """The tops keep their configured shapes."""

    def forward_cpu(self, bottom, top):
        for blob, filler in zip(top, self.fillers):
            if filler.type != "constant":
                values = np.empty(blob.shape, self.dtype)
                fill(values, filler)
                blob.set_data(values)   # device: one host -> device copy

    forward_gpu = forward_cpu
