"""MemoryData: batches from arrays the caller hands over (pycaffe's ``net.set_input_arrays``)."""

import numpy as np

from .base import Layer
from .registry import register_layer


@register_layer("MemoryData")
class MemoryData(Layer):
    """Serves consecutive batches of arrays given to ``reset(data, labels)``, starting over
    after the last:

        top[0] = data[pos : pos + batch_size],  top[1] = labels[pos : pos + batch_size]
        pos = (pos + batch_size) mod N

    data: (N, channels, height, width); labels: (N,) or (N, 1, 1, 1); N a multiple of
    batch_size. The values are served as given (no transformation; transform_param is refused).
    top[0]: (batch_size, channels, height, width).   top[1]: (batch_size,).   No backward.
    On the device each top receives its batch with one host -> device copy (``set_data``).
    """

    params = ("memory_data_param",)
    num_bottom = 0
    num_top = 2
    has_gpu = True   # forward_gpu: one host -> device copy per top; no kernels

    def layer_setup(self, bottom, top):
        p = self.param.memory_data_param
        self.shape = (p.batch_size, p.channels, p.height, p.width)
        self.require(all(d > 0 for d in self.shape),
                     "memory_data_param needs batch_size, channels, height and width, all "
                     f"positive; got {' x '.join(map(str, self.shape))}")
        self.data = self.labels = None
        self.pos = 0
        top[0].reshape(self.shape)
        top[1].reshape(self.shape[:1])

    def reset(self, data, labels):
        """Serve batches of ``data`` (N, C, H, W) and ``labels`` (N,) from the first on.

        Arrays already of the net's dtype are used without a copy, as Caffe's Reset does, so
        changing them in place changes what later batches hold.
        """
        data = np.asarray(data, dtype=self.dtype)
        labels = np.asarray(labels, dtype=self.dtype)
        self.require(data.shape[1:] == self.shape[1:] and data.ndim == 4,
                     f"reset: data must be (N, {', '.join(map(str, self.shape[1:]))}), "
                     f"got {data.shape}")
        n = data.shape[0]
        self.require(labels.shape in ((n,), (n, 1, 1, 1)),
                     f"reset: labels must be ({n},) or ({n}, 1, 1, 1) for {n} images, "
                     f"got {labels.shape}")
        self.require(n > 0 and n % self.shape[0] == 0,
                     f"reset: the number of images ({n}) must be a positive multiple of "
                     f"batch_size ({self.shape[0]})")
        self.data, self.labels, self.pos = data, labels.reshape(n), 0

    def reshape(self, bottom, top):
        """The tops keep the memory_data_param shape."""

    def forward_cpu(self, bottom, top):
        self.require(self.data is not None,
                     "no data yet: call reset(data, labels) (pycaffe: net.set_input_arrays) "
                     "before forward")
        batch = slice(self.pos, self.pos + self.shape[0])
        for blob, values in zip(top, (self.data[batch], self.labels[batch])):
            blob.reshape(values.shape)
            blob.set_data(values)   # host: a copy into the top; device: one host -> device copy
        self.pos = batch.stop % len(self.data)

    forward_gpu = forward_cpu
