"""LSTMUnit: one time step of an LSTM cell, given the gate inputs (the LSTM layer's step too)."""

import numpy as np

from .base import Layer
from .registry import register_layer


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def lstm_step(c_prev, a, cont):
    """Forward of one step on (N, D) c_prev, (N, 4D) gate inputs a and (N, 1) cont.

    Returns (acts, c, h): acts holds the activated gates [i, f, o, g] side by side, (N, 4D).
    """
    d = c_prev.shape[-1]
    acts = np.empty_like(a)
    acts[:, :3 * d] = _sigmoid(a[:, :3 * d])
    acts[:, 3 * d:] = np.tanh(a[:, 3 * d:])
    i, f, o, g = np.split(acts, 4, axis=1)
    c = cont * f * c_prev + i * g
    h = o * np.tanh(c)
    return acts, c, h


def lstm_step_backward(c_prev, acts, c, cont, dc, dh):
    """Backward of ``lstm_step``: from the gradients dc, dh of c and h, return (dc_prev, da)."""
    i, f, o, g = np.split(acts, 4, axis=1)
    tanh_c = np.tanh(c)
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    da = np.concatenate([dc * g * i * (1 - i),
                         dc * cont * c_prev * f * (1 - f),
                         dh * tanh_c * o * (1 - o),
                         dc * i * (1 - g * g)], axis=1)
    return dc * cont * f, da


@register_layer("LSTMUnit")
class LSTMUnit(Layer):
    """One LSTM step, with the gates in Caffe's order i, f, o, g along the last axis of x:

        i = sigmoid(x_i)   f = sigmoid(x_f)   o = sigmoid(x_o)   g = tanh(x_g)
        c = cont * f * c_prev + i * g
        h = o * tanh(c)

    A 0 in cont starts a new sequence: the previous cell state is forgotten.

    bottom: c_prev (1, N, D), x (1, N, 4D), cont (1, N).   top: c (1, N, D), h (1, N, D).
    backward, with dc~ = dc + dh * o * (1 - tanh(c)^2):
        dc_prev = dc~ * cont * f
        dx_i = dc~ * g * i (1 - i)          dx_f = dc~ * cont * c_prev * f (1 - f)
        dx_o = dh * tanh(c) * o (1 - o)     dx_g = dc~ * i * (1 - g^2)
    No gradient flows to cont (asking for one is an error, as in Caffe).
    On the device: cuda/recurrent.cu, the activated gates kept in a layer-owned blob.
    """

    num_bottom = 3
    num_top = 2
    has_gpu = True
    kernels = "recurrent.cu"

    def layer_setup(self, bottom, top):
        self.acts_blob = self.new_blob()   # device: the activated gates i, f, o, g (1, N, 4D)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        c_prev, x, cont = bottom
        self.require(c_prev.num_axes == 3 and c_prev.shape[0] == 1,
                     f"bottom[0] (c_prev) must have shape (1, N, D), got {c_prev.shape}")
        n, d = c_prev.shape[1:]
        self.require(x.shape == (1, n, 4 * d),
                     f"bottom[1] (gate inputs) must have shape (1, {n}, {4 * d}) for c_prev "
                     f"{c_prev.shape}, got {x.shape}")
        self.require(cont.shape == (1, n),
                     f"bottom[2] (cont) must have shape (1, {n}), got {cont.shape}")
        top[0].reshape_like(c_prev)
        top[1].reshape_like(c_prev)
        self.acts_blob.reshape_like(x)

    def forward_cpu(self, bottom, top):
        c_prev, x, cont = (b.data[0] for b in bottom)
        self.acts, top[0].data[0], top[1].data[0] = lstm_step(c_prev, x, cont[:, None])

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[2]:
            self.fail("cannot back-propagate to the sequence continuation indicators (bottom[2])")
        if not (propagate_down[0] or propagate_down[1]):
            return
        c_prev, cont = bottom[0].data[0], bottom[2].data[0][:, None]
        dc_prev, dx = lstm_step_backward(c_prev, self.acts, top[0].data[0], cont,
                                         top[0].diff[0], top[1].diff[0])
        if propagate_down[0]:
            bottom[0].diff[0] = dc_prev
        if propagate_down[1]:
            bottom[1].diff[0] = dx

    def forward_gpu(self, bottom, top):
        c_prev, x, cont = bottom
        self.launch_1d("lstm_unit_forward", c_prev.count, c_prev.gpu_data, x.gpu_data,
                       cont.gpu_data, self.acts_blob.mutable_gpu_data, top[0].mutable_gpu_data,
                       top[1].mutable_gpu_data, np.int32(c_prev.shape[2]))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[2]:
            self.fail("cannot back-propagate to the sequence continuation indicators (bottom[2])")
        if not (propagate_down[0] or propagate_down[1]):
            return
        c_prev, x, cont = bottom
        self.launch_1d("lstm_unit_backward", c_prev.count, c_prev.gpu_data,
                       self.acts_blob.gpu_data, top[0].gpu_data, cont.gpu_data, top[0].gpu_diff,
                       top[1].gpu_diff, 0, c_prev.mutable_gpu_diff if propagate_down[0] else 0,
                       x.mutable_gpu_diff if propagate_down[1] else 0, np.int32(c_prev.shape[2]))
