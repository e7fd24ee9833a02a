"""Blob: the n-dimensional array that flows between layers.

A Blob holds two arrays of the same shape: ``data`` (values) and ``diff`` (gradient of the loss
with respect to those values). Both are float32 numpy arrays on the host; the gradient checks in
the tests build float64 blobs through the ``dtype`` argument.

Sharing is explicit and never copies: ``share_data``/``share_diff`` make this blob a view of
another blob's storage (Split, Flatten, Reshape and parameter sharing use it). In-place layers
simply get the same Blob object as bottom and top.
"""

import numbers

import numpy as np

from .errors import ConfnetError


class Blob:
    def __init__(self, shape=(), dtype=np.float32, name=""):
        self.name = name
        self.dtype = np.dtype(dtype)
        self._data = np.zeros(tuple(shape), self.dtype)
        self._diff = np.zeros(tuple(shape), self.dtype)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def shape(self):
        return self._data.shape

    @property
    def count(self):
        return self._data.size

    @property
    def num_axes(self):
        return self._data.ndim

    def canonical_axis(self, axis):
        """Map a possibly negative axis into [0, num_axes), as Caffe's CanonicalAxisIndex."""
        n = self.num_axes
        if not -n <= axis < max(n, 1):
            raise ConfnetError(f"axis {axis} out of range for a blob of shape {self.shape}")
        return axis % n if n else 0

    def count_range(self, start, end=None):
        """Product of the dimensions in [start, end)."""
        return int(np.prod(self.shape[start:end], dtype=np.int64))

    def reshape(self, *shape):
        """Give the blob a new shape, as a tuple or as pycaffe's reshape(n, c, h, w);
        reallocates (zeros) only when the shape changes."""
        shape = tuple(int(d) for d in _dims(shape))
        if any(d < 0 for d in shape):
            raise ConfnetError(f"blob '{self.name}': negative dimension in shape {shape}")
        if shape != self._data.shape:
            self._data = np.zeros(shape, self.dtype)
            self._diff = np.zeros(shape, self.dtype)

    def reshape_like(self, other):
        self.reshape(other.shape)

    # pycaffe's legacy 4-D accessors: axes a blob does not have count as 1.
    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def _legacy(self, axis):
        return self.shape[axis] if axis < self.num_axes else 1

    # -- values --------------------------------------------------------------------------------
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._data[...] = value

    @property
    def diff(self):
        return self._diff

    @diff.setter
    def diff(self, value):
        self._diff[...] = value

    def share_data(self, other, shape=None):
        """Use ``other``'s data storage (viewed with ``shape`` if given); no copy."""
        self._data = other._data.reshape(shape if shape is not None else other.shape)

    def share_diff(self, other, shape=None):
        self._diff = other._diff.reshape(shape if shape is not None else other.shape)

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self.shape})"


def _dims(shape):
    """(4, 3) from reshape((4, 3)) or reshape(4, 3)."""
    if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
        return tuple(shape[0])
    return shape
