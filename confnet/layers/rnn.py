"""RNN: Caffe's simple (Elman) recurrent layer."""

import numpy as np

from ..gpu import blas
from .recurrent import Recurrent, at, shifted
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

    def layer_setup(self, bottom, top):
        super().layer_setup(bottom, top)
        # Device buffers, (T, N, H) each: o, do~ and W_ho^T do~.
        self.o_blob, self.d_o_blob, self.d_h_out_blob = (self.new_blob() for _ in range(3))

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        for blob in (self.o_blob, self.d_o_blob, self.d_h_out_blob):
            blob.reshape_like(top[0])

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

    def steps_forward_gpu(self, n, cont, out):
        size, rows = n * self.num_output, self.T * n
        pre, h = self.pre_blob.gpu_data, self.state_blobs[0].mutable_gpu_data
        for t in range(self.T):
            self.step_input_gpu(t, n, cont)
            self.launch_1d("rnn_forward", size, at(pre, t * size), at(h, (t + 1) * size))
        w_ho, b_o = self.blobs[-2:]
        o = self.o_blob.mutable_gpu_data
        blas.gemm(False, True, rows, self.num_output, self.num_output, 1, at(h, size),
                  w_ho.gpu_data, 0, o)
        blas.bias_forward(rows, self.num_output, 1, b_o.gpu_data, o)
        self.launch_1d("rnn_forward", rows * self.num_output, o, o)
        out.copy_from(self.o_blob)

    def steps_backward_gpu(self, n, d_out, cont):
        h_dim, size, rows = self.num_output, n * self.num_output, self.T * n
        w_ho, b_o = self.blobs[-2:]
        h = self.state_blobs[0].gpu_data
        d_o = self.d_o_blob.mutable_gpu_data
        self.launch_1d("rnn_backward", rows * h_dim, self.o_blob.gpu_data, d_out, 0, d_o)
        blas.gemm(True, False, h_dim, h_dim, rows, 1, d_o, at(h, size), 1, w_ho.mutable_gpu_diff)
        blas.bias_backward(rows, h_dim, 1, d_o, b_o.mutable_gpu_diff)
        d_h_out = self.d_h_out_blob.mutable_gpu_data
        blas.gemm(False, False, rows, h_dim, h_dim, 1, d_o, w_ho.gpu_data, 0, d_h_out)
        d_z, d_h = self.d_pre_blob.mutable_gpu_data, self.d_state[0].mutable_gpu_data
        for t in reversed(range(self.T)):
            d_z_t = at(d_z, t * size)
            self.launch_1d("rnn_backward", size, at(h, (t + 1) * size), d_h,
                           at(d_h_out, t * size), d_z_t)
            self.step_state_grad_gpu(t, n, cont, d_z_t, d_h)
