"""LSTM: Caffe's long short-term memory layer."""

import numpy as np

from ..gpu import blas
from .lstm_unit import lstm_step, lstm_step_backward
from .recurrent import Recurrent, at, shifted
from .registry import register_layer


@register_layer("LSTM")
class LSTM(Recurrent):
    """For t = 1 .. T, with H = num_output and x_t flattened to K features:

        a_t = W_hc (cont_t * h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static]   (4H gate inputs)
        then the LSTMUnit step on (c_{t-1}, a_t, cont_t), gates in Caffe's order i, f, o, g:
        i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
        c_t = cont_t * f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

    bottom: x (T, N, ...), cont (T, N), [x_static (N, ...)],
            [h_0 (1, N, H), c_0 (1, N, H) with expose_hidden].
    top: h (T, N, H), [h_T (1, N, H), c_T (1, N, H) with expose_hidden].
    params (Caffe's order): W_xc (4H, K), b_c (4H,), [W_xc_static (4H, S)], W_hc (4H, H).
    backward (through time): each step is LSTMUnit's backward (see lstm_unit.py) fed with
        dh_t = dh_t(top) + cont_{t+1} W_hc^T da_{t+1} and dc_t from step t+1 (plus the h_T, c_T
        tops' gradients at t = T); then dx_t = W_xc^T da_t, dx_static = W_xc_static^T sum_t da_t,
    dW_xc += sum_t da_t x_t^T, db_c += sum_t da_t, dW_hc += sum_t da_t (cont_t h_{t-1})^T; the
    initial states get dh_0 = cont_1 W_hc^T da_1 and dc_0 = the unit's dc_prev at t = 1.
    See recurrent.py for cont and the carried state.
    """

    max_bottom, max_top = 5, 3
    gates = 4
    state_names = ("h", "c")

    def steps_forward(self, pre, cont, states):
        w_hc = self.blobs[self.recurrent_weight].data
        h, c = (s.copy() for s in states)
        self.h_0, self.c_0 = h, c
        self.h = np.empty(pre.shape[:2] + (self.num_output,), pre.dtype)
        self.c = np.empty_like(self.h)
        self.acts = np.empty_like(pre)
        for t in range(self.T):
            a = pre[t] + (cont[t] * h) @ w_hc.T
            self.acts[t], c, h = lstm_step(c, a, cont[t])
            self.h[t], self.c[t] = h, c
        return self.h, [h, c]

    def steps_backward(self, d_out, cont, d_final):
        w_hc = self.blobs[self.recurrent_weight]
        c_prev = shifted(self.c, self.c_0)
        d_a = np.empty_like(self.acts)
        d_h, d_c = d_final
        for t in reversed(range(self.T)):
            d_c, d_a[t] = lstm_step_backward(c_prev[t], self.acts[t], self.c[t], cont[t], d_c,
                                             d_h + d_out[t])
            d_h = cont[t] * (d_a[t] @ w_hc.data)
        h_prev = cont * shifted(self.h, self.h_0)
        w_hc.diff += d_a.reshape(-1, d_a.shape[-1]).T @ h_prev.reshape(-1, self.num_output)
        return d_a, [d_h, d_c]

    def steps_forward_gpu(self, n, cont, out):
        size = n * self.num_output
        # The gate inputs become the activated gates in place (backward needs only those).
        acts = self.pre_blob.mutable_gpu_data
        h, c = (blob.mutable_gpu_data for blob in self.state_blobs)
        for t in range(self.T):
            self.step_input_gpu(t, n, cont)
            self.launch_1d("lstm_unit_forward", size, at(c, t * size), at(acts, 4 * t * size),
                           at(cont, t * n), at(acts, 4 * t * size), at(c, (t + 1) * size),
                           at(h, (t + 1) * size), np.int32(self.num_output))
        blas.copy(self.T * size, at(h, size), out.mutable_gpu_data)

    def steps_backward_gpu(self, n, d_out, cont):
        size = n * self.num_output
        acts, c = self.pre_blob.gpu_data, self.state_blobs[1].gpu_data
        d_a = self.d_pre_blob.mutable_gpu_data
        d_h, d_c = (blob.mutable_gpu_data for blob in self.d_state)
        for t in reversed(range(self.T)):
            d_a_t = at(d_a, 4 * t * size)
            self.launch_1d("lstm_unit_backward", size, at(c, t * size), at(acts, 4 * t * size),
                           at(c, (t + 1) * size), at(cont, t * n), d_c, d_h, at(d_out, t * size),
                           d_c, d_a_t, np.int32(self.num_output))
            self.step_state_grad_gpu(t, n, cont, d_a_t, d_h)
