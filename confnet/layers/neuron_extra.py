"""More element-wise layers: ELU, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip, Swish.

All take one bottom and give one top of the same shape, and may run in place. A layer whose
gradient needs the input x keeps a copy of it when it runs in place (its bottom data then holds
y); the others work from what forward leaves behind (y, or a cached sigmoid).
"""

import math

import numpy as np

from .neuron import Neuron
from .registry import register_layer


class Elementwise(Neuron):
    """y = f(x) element by element; backward: dx = dy * f'(x).

    Subclasses give ``function(x)`` and ``derivative(x, y)``. With ``keeps_input`` (the default)
    ``derivative`` gets the input x, copied before forward overwrites it in place; without it,
    it gets whatever the bottom holds (y when in place) and must work from y or its own cache.
    """

    keeps_input = True

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        self.kept = x.copy() if self.keeps_input and top[0] is bottom[0] else None
        top[0].data[...] = self.function(x)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x = bottom[0].data if self.kept is None else self.kept
            bottom[0].diff[...] = top[0].diff * self.derivative(x, top[0].data)

    def function(self, x):
        raise NotImplementedError

    def derivative(self, x, y):
        raise NotImplementedError


@register_layer("ELU")
class ELU(Elementwise):
    """y = x for x > 0, alpha * (exp(x) - 1) otherwise.

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy for x > 0, dy * alpha * exp(x) otherwise (x = 0 takes the second branch,
    as in Caffe).
    """

    params = ("elu_param",)

    def layer_setup(self, bottom, top):
        self.alpha = float(self.param.elu_param.alpha)

    def function(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def derivative(self, x, y):
        return np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0)))


@register_layer("AbsVal")
class AbsVal(Elementwise):
    """y = |x|

    bottom: 1 blob, any shape.   top: 1 blob, same shape (in place allowed here; Caffe refuses).
    backward: dx = sign(x) * dy (0 at x = 0).
    """

    def function(self, x):
        return np.abs(x)

    def derivative(self, x, y):
        return np.sign(x)


@register_layer("BNLL")
class BNLL(Elementwise):
    """y = log(1 + exp(x)) (the binomial normal log likelihood, softplus), computed without
    overflow.

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * sigmoid(x).
    """

    def function(self, x):
        return np.logaddexp(0, x)

    def derivative(self, x, y):
        return 0.5 * np.tanh(0.5 * x) + 0.5


@register_layer("Power")
class Power(Elementwise):
    """y = (shift + scale * x) ^ power

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * power * scale * (shift + scale * x) ^ (power - 1); zero when
    power * scale = 0 (y is then constant).
    """

    params = ("power_param",)

    def layer_setup(self, bottom, top):
        p = self.param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.diff_scale = self.power * self.scale

    def function(self, x):
        base = self.scale * x + self.shift
        return base if self.power == 1 else np.power(base, self.power)

    def derivative(self, x, y):
        if self.diff_scale == 0:
            return 0.0
        if self.power == 1:
            return self.diff_scale
        return self.diff_scale * np.power(self.scale * x + self.shift, self.power - 1)


def _log_base(layer, base):
    """Natural log of a base parameter: -1 means e; anything else must be positive."""
    if base == -1:
        return 1.0
    layer.require(base > 0, f"base must be strictly positive (or -1 for e), got {base}")
    return math.log(base)


@register_layer("Exp")
class Exp(Elementwise):
    """y = base ^ (shift + scale * x)   (base -1 means e)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * y * ln(base) * scale.
    """

    params = ("exp_param",)
    keeps_input = False

    def layer_setup(self, bottom, top):
        p = self.param.exp_param
        log_base = _log_base(self, float(p.base))
        self.inner_scale = log_base * float(p.scale)
        self.outer_scale = math.exp(log_base * float(p.shift))

    def function(self, x):
        return self.outer_scale * np.exp(self.inner_scale * x)

    def derivative(self, x, y):
        return self.inner_scale * y


@register_layer("Log")
class Log(Elementwise):
    """y = log_base(shift + scale * x)   (base -1 means e)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * scale / (ln(base) * (shift + scale * x)).
    """

    params = ("log_param",)

    def layer_setup(self, bottom, top):
        p = self.param.log_param
        log_base = _log_base(self, float(p.base))
        self.require(log_base != 0, "base 1 has no logarithm")
        self.base_scale = 1.0 / log_base
        self.scale, self.shift = float(p.scale), float(p.shift)

    def function(self, x):
        return self.base_scale * np.log(self.scale * x + self.shift)

    def derivative(self, x, y):
        return (self.base_scale * self.scale) / (self.scale * x + self.shift)


@register_layer("Threshold")
class Threshold(Neuron):
    """y = 1 where x > threshold, else 0.

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: none, as in Caffe: asking for the gradient of the bottom is an error
    (force_backward skips this layer).
    """

    params = ("threshold_param",)

    def layer_setup(self, bottom, top):
        self.threshold = float(self.param.threshold_param.threshold)

    def forward_cpu(self, bottom, top):
        top[0].data[...] = bottom[0].data > self.threshold

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.fail("has no backward (as in Caffe); nothing can learn through it: "
                      "set propagate_down: false or move it off the path to the loss")

    def allow_force_backward(self, bottom_index):
        return False


@register_layer("Clip")
class Clip(Elementwise):
    """y = max(min, min(x, max))

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy where min <= x <= max (bounds included, as in Caffe), else 0.
    """

    params = ("clip_param",)

    def layer_setup(self, bottom, top):
        p = self.param.clip_param
        self.require(p.HasField("min") and p.HasField("max"),
                     "clip_param needs both min and max")
        self.low, self.high = float(p.min), float(p.max)

    def function(self, x):
        return np.maximum(self.low, np.minimum(x, self.high))

    def derivative(self, x, y):
        return (x >= self.low) & (x <= self.high)


@register_layer("Swish")
class Swish(Elementwise):
    """y = x * sigmoid(beta * x)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy * (beta * y + s * (1 - beta * y)), s = sigmoid(beta * x) cached by forward.
    """

    params = ("swish_param",)
    keeps_input = False

    def layer_setup(self, bottom, top):
        self.beta = float(self.param.swish_param.beta)

    def function(self, x):
        self.sigmoid = 0.5 * np.tanh(0.5 * self.beta * x) + 0.5
        return x * self.sigmoid

    def derivative(self, x, y):
        by = self.beta * y
        return by + self.sigmoid * (1 - by)
