"""Fillers: initial values of parameter blobs, as FillerParameter describes.

For a blob of shape (n0, n1, ...): fan_in = count / n0, fan_out = count / n1 (count for a 1-D
blob); ``variance_norm`` picks fan_in, fan_out or their average as n.

    constant           value
    uniform            U(min, max)
    gaussian           N(mean, std^2); with ``sparse`` = s >= 0, each entry kept with
                       probability s / n0 and zero otherwise
    xavier             U(-sqrt(3/n), sqrt(3/n))
    msra               N(0, 2/n)
    positive_unitball  U(0, 1), then each of the n0 rows scaled to sum to 1
    bilinear           the weights of bilinear upsampling for a (.., .., K, K) kernel
"""

import numpy as np

from . import rng
from .errors import ConfnetError

FAN_IN, FAN_OUT, AVERAGE = 0, 1, 2


def fill(array, param):
    """Fill ``array`` in place as ``param`` (a FillerParameter) says."""
    kind = param.type
    try:
        filler = _FILLERS[kind]
    except KeyError:
        raise ConfnetError(f"unknown filler type '{kind}'; known: {', '.join(sorted(_FILLERS))}")
    array[...] = filler(array.shape, param, _Draws(rng.get(), array.dtype))


class _Draws:
    """Random draws made directly in the blob's dtype (float32 nets need no float64 copy)."""

    def __init__(self, generator, dtype):
        self.g = generator
        self.dtype = dtype if dtype in (np.float32, np.float64) else np.float64

    def uniform(self, low, high, shape):
        return self.g.random(shape, self.dtype) * self.dtype.type(high - low) + \
            self.dtype.type(low)

    def normal(self, mean, std, shape):
        return self.g.standard_normal(shape, self.dtype) * self.dtype.type(std) + \
            self.dtype.type(mean)

    def random(self, shape):
        return self.g.random(shape, self.dtype)


def _fan(shape, param):
    count = int(np.prod(shape)) if shape else 1
    fan_in = count / shape[0] if shape else 1
    fan_out = count / shape[1] if len(shape) > 1 else count
    norm = param.variance_norm
    if norm == FAN_OUT:
        return fan_out
    if norm == AVERAGE:
        return (fan_in + fan_out) / 2
    return fan_in


def _constant(shape, param, g):
    return g.dtype.type(param.value)


def _uniform(shape, param, g):
    return g.uniform(param.min, param.max, shape)


def _gaussian(shape, param, g):
    values = g.normal(param.mean, param.std, shape)
    if param.sparse >= 0:
        if len(shape) < 1 or shape[0] == 0:
            raise ConfnetError("gaussian filler: 'sparse' needs a blob with at least one axis")
        keep = g.random(shape) < param.sparse / shape[0]
        values = values * keep
    return values


def _xavier(shape, param, g):
    scale = np.sqrt(3.0 / _fan(shape, param))
    return g.uniform(-scale, scale, shape)


def _msra(shape, param, g):
    return g.normal(0.0, np.sqrt(2.0 / _fan(shape, param)), shape)


def _positive_unitball(shape, param, g):
    values = g.random(shape)
    rows = values.reshape(shape[0], -1) if shape else values.reshape(1, -1)
    rows /= rows.sum(axis=1, keepdims=True)
    return rows.reshape(shape)


def _bilinear(shape, param, g):
    if len(shape) != 4 or shape[2] != shape[3]:
        raise ConfnetError(f"bilinear filler needs a 4-D blob with a square kernel, got {shape}")
    k = shape[3]
    f = np.ceil(k / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    axis = 1 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(np.outer(axis, axis), shape)


_FILLERS = {
    "constant": _constant, "uniform": _uniform, "gaussian": _gaussian, "xavier": _xavier,
    "msra": _msra, "positive_unitball": _positive_unitball, "bilinear": _bilinear,
}
