"""RNN: Caffe's simple (Elman) recurrent layer."""

import numpy as np

from .recurrent import Recurrent, shifted
from .registry import register_layer


@register_layer("RNN")
class RNN(Recurrent):
    """For t = 1 .. T, with H = num_output and x_t flattened to K features:

        h_t = tanh(W_hh (cont_t * h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])
        o_t = tanh(W_ho h_t + b_o)

    bottom: x (T, N, ...), cont (T, N), [x_static (N, ...)], [h_0 (1, N, H) with expose_hidden].
    top: o (T, N, H), [h_T (1, N, H) with expose_hidden].
    params (Caffe's order): W_xh (H, K), b_h (H,), [W_xh_static (H, S)], W_hh (H, H),
    W_ho (H, H), b_o (H,).
    backward (through time): with do~_t = do_t (1 - o_t^2) and
        dh_t = W_ho^T do~_t + cont_{t+1} W_hh^T dz_{t+1} (+ dh_T from the h_T top),
        dz_t = dh_t (1 - h_t^2):
    dx_t = W_xh^T dz_t, dx_static = W_xh_static^T sum_t dz_t, dh_0 = cont_1 W_hh^T dz_1,
    dW_xh += sum_t dz_t x_t^T, db_h += sum_t dz_t, dW_hh += sum_t dz_t (cont_t h_{t-1})^T,
    dW_ho += sum_t do~_t h_t^T, db_o += sum_t do~_t. See recurrent.py for cont and the state.
    """

    max_bottom, max_top = 4, 2

    def add_output_params(self, recurrent_param):
        h = self.num_output
        self.add_param_blob((h, h), recurrent_param.weight_filler)
        self.add_param_blob((h,), recurrent_param.bias_filler)

    def steps_forward(self, pre, cont, states):
        w_hh = self.blobs[self.recurrent_weight].data
        w_ho, b_o = (b.data for b in self.blobs[-2:])
        self.h_0 = h = states[0].copy()
        self.h = np.empty_like(pre)
        for t in range(self.T):
            h = np.tanh(pre[t] + (cont[t] * h) @ w_hh.T)
            self.h[t] = h
        self.o = np.tanh(self.h @ w_ho.T + b_o)
        return self.o, [h]

    def steps_backward(self, d_out, cont, d_final):
        w_hh = self.blobs[self.recurrent_weight]
        w_ho, b_o = self.blobs[-2:]
        h_dim = self.num_output
        d_o = d_out * (1 - self.o * self.o)
        w_ho.diff += d_o.reshape(-1, h_dim).T @ self.h.reshape(-1, h_dim)
        b_o.diff += d_o.sum(axis=(0, 1))
        d_h_out = d_o @ w_ho.data
        d_z = np.empty_like(self.h)
        d_h = d_final[0]
        for t in reversed(range(self.T)):
            d_z[t] = (d_h + d_h_out[t]) * (1 - self.h[t] * self.h[t])
            d_h = cont[t] * (d_z[t] @ w_hh.data)
        h_prev = cont * shifted(self.h, self.h_0)
        w_hh.diff += d_z.reshape(-1, h_dim).T @ h_prev.reshape(-1, h_dim)
        return d_z, [d_h]
