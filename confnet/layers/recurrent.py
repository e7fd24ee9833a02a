"""Recurrent: what RNN and LSTM share (Caffe's RecurrentLayer), minus the step they repeat.

Caffe unrolls the recurrence into an internal net of InnerProduct, Eltwise, Scale and LSTMUnit
layers; here the same math runs as a loop over the time steps, vectorized over the streams.

Bottoms, in Caffe's order:
    x         (T, N, ...)   time-major input; the features are flattened from axis 2
    cont      (T, N)        sequence continuation indicators: 0 at the first step of a sequence
                            cuts the recurrence (the previous state is multiplied by cont)
    x_static  (N, ...)      optional input seen at every step; flattened from axis 1
    states    (1, N, H)     with expose_hidden: the initial state(s), in the order of
                            ``state_names`` (h_0 for RNN; h_0, c_0 for LSTM)
Tops: the output (T, N, H), then with expose_hidden the final state(s) (1, N, H).

Parameter blobs, in Caffe's order (G = ``gates`` rows per hidden unit):
    W_x (G*H, K), b (G*H,), [W_static (G*H, S) with x_static], W_h (G*H, H), then the
    subclass's own (``add_output_params``).

Every step sees the pre-activation  pre_t = W_x x_t + b + W_static x_static + W_h (cont_t h_{t-1}).
Without expose_hidden the state is carried from one forward to the next, as in Caffe (the final
state of a batch is the initial state of the next; it starts at zero and restarts at zero when
N changes), so a sequence may span batches; no gradient crosses batches.

On the device the matrix products run on cuda/gemm.cu (confnet/gpu/blas.py) and the
elementwise parts of a step on cuda/recurrent.cu, the loop over the steps staying on the host;
what backward needs (gate inputs, the states of every step, cont_t h_{t-1}) and the carried
state are layer-owned blobs.

Gradients: x, x_static and every parameter, as Caffe. With expose_hidden the initial states
also get their gradient and the final-state tops' gradients flow back through the steps;
Caffe shares only the data of those blobs with its unrolled net, so it back-propagates
through neither (a deliberate difference). cont never gets a gradient (its diff is zeroed).
"""

import logging

import numpy as np

from ..gpu import blas
from .base import Layer

log = logging.getLogger("confnet")


class Recurrent(Layer):
    """Base of RNN and LSTM; a subclass sets ``gates`` and ``state_names`` and implements
    ``add_output_params``, ``steps_forward`` and ``steps_backward``."""

    params = ("recurrent_param",)
    min_bottom = 2
    min_top = 1
    gates = 1
    state_names = ("h",)
    has_gpu = True
    kernels = "recurrent.cu"

    # -- set up --------------------------------------------------------------------------------
    def layer_setup(self, bottom, top):
        p = self.param.recurrent_param
        self.num_output = p.num_output
        self.require(self.num_output > 0, "recurrent_param.num_output must be set to a positive "
                     "number")
        self.expose_hidden = p.expose_hidden
        self.debug_info = p.debug_info
        self._check_blob_roles(bottom, top)
        self._add_params(bottom, p)
        # The state carried from one forward to the next (without expose_hidden), (N, H) each;
        # carried_n is the N it was made for (None: not yet).
        self.carried = [self.new_blob() for _ in self.state_names]
        self.carried_n = None
        # Device buffers: the gate inputs (T, N, G*H) and their gradient; per state, every step's
        # value after the initial one (T + 1, N, H) and the gradient flowing back through the
        # steps (N, H); cont_t h_{t-1} (T, N, H); with x_static, ones (T,) and the sum over the
        # steps of the gate gradients (N, G*H).
        self.pre_blob, self.d_pre_blob, self.masked_blob, self.ones, self.d_static = (
            self.new_blob() for _ in range(5))
        self.state_blobs = [self.new_blob() for _ in self.state_names]
        self.d_state = [self.new_blob() for _ in self.state_names]

    def _check_blob_roles(self, bottom, top):
        exposed = len(self.state_names) if self.expose_hidden else 0
        extra = len(bottom) - 2 - exposed
        self.require(extra in (0, 1), self._bottom_names(exposed, len(bottom)))
        finals = "".join(f", {s}_T" for s in self.state_names) if exposed else ""
        self.require(len(top) == 1 + exposed, f"needs tops: the output{finals}; got {len(top)}")
        self.static_input = extra == 1
        self.state_offset = 2 + extra

    def _add_params(self, bottom, p):
        x = bottom[0]
        self.require(x.num_axes >= 3, f"bottom[0] must have shape (T, N, features...), got "
                     f"{x.shape}")
        self.T = x.shape[0]
        self.inputs = x.count_range(2)
        rows = self.gates * self.num_output
        self.add_param_blob((rows, self.inputs), p.weight_filler)
        self.add_param_blob((rows,), p.bias_filler)
        if self.static_input:
            xs = bottom[2]
            self.require(xs.num_axes >= 2, f"bottom[2] (x_static) must have shape "
                         f"(N, features...), got {xs.shape}")
            self.static_inputs = xs.count_range(1)
            self.add_param_blob((rows, self.static_inputs), p.weight_filler)
        self.recurrent_weight = len(self.blobs)
        self.add_param_blob((rows, self.num_output), p.weight_filler)
        self.add_output_params(p)

    def _bottom_names(self, exposed, got):
        states = "".join(f", {s}_0" for s in self.state_names) if exposed else ""
        return f"needs bottoms x, cont, [x_static]{states}; got {got} blob(s)"

    def add_output_params(self, recurrent_param):
        """Create the parameter blobs that follow W_h (none by default)."""

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def reshape(self, bottom, top):
        x, cont = bottom[0], bottom[1]
        self.require(x.num_axes >= 3 and x.shape[0] == self.T,
                     f"bottom[0] must have shape ({self.T}, N, features...): the number of time "
                     f"steps is fixed at set up; got {x.shape}")
        n = x.shape[1]
        self.require(x.count_range(2) == self.inputs,
                     f"bottom[0] {x.shape} has {x.count_range(2)} features per step; the "
                     f"weights were made for {self.inputs}")
        self.require(cont.shape == (self.T, n),
                     f"bottom[1] (cont) must have shape ({self.T}, {n}), got {cont.shape}")
        if self.static_input:
            xs = bottom[2]
            self.require(xs.num_axes >= 2 and xs.shape[0] == n
                         and xs.count_range(1) == self.static_inputs,
                         f"bottom[2] (x_static) must have shape ({n}, ...) with "
                         f"{self.static_inputs} features, got {xs.shape}")
        state_shape = (1, n, self.num_output)
        for i, name in enumerate(self.state_names[:len(bottom) - self.state_offset]):
            blob = bottom[self.state_offset + i]
            self.require(blob.shape == state_shape, f"bottom[{self.state_offset + i}] ({name}_0) "
                         f"must have shape {state_shape}, got {blob.shape}")
        top[0].reshape((self.T, n, self.num_output))
        for blob in top[1:]:
            blob.reshape(state_shape)
        rows = self.gates * self.num_output
        for blob in (self.pre_blob, self.d_pre_blob):
            blob.reshape((self.T, n, rows))
        self.masked_blob.reshape((self.T, n, self.num_output))
        for states, d_state in zip(self.state_blobs, self.d_state):
            states.reshape((self.T + 1, n, self.num_output))
            d_state.reshape((n, self.num_output))
        if self.static_input:
            self.ones.reshape((self.T,))
            self.ones.set_data(1)
            self.d_static.reshape((n, rows))

    # -- forward -------------------------------------------------------------------------------
    def forward_cpu(self, bottom, top):
        n = bottom[0].shape[1]
        x = bottom[0].data.reshape(self.T, n, self.inputs)
        pre = x @ self.blobs[0].data.T + self.blobs[1].data
        if self.static_input:
            pre += bottom[2].data.reshape(n, -1) @ self.blobs[2].data.T
        cont = bottom[1].data[..., None]
        out, final = self.steps_forward(pre, cont, self._initial_states(bottom, n))
        top[0].data[...] = out
        for blob, state in zip(top[1:] if self.expose_hidden else self.carried, final):
            blob.data.reshape(state.shape)[...] = state
        self._debug_forward(top)

    def _initial_states(self, bottom, n):
        if self.expose_hidden:
            return [b.data[0] for b in bottom[self.state_offset:]]
        return [b.data for b in self._carried(n)]

    def _carried(self, n):
        """The carried state blobs, reset to zeros when N changed (or at the first forward)."""
        if self.carried_n != n:
            for blob in self.carried:
                blob.reshape((n, self.num_output))
                blob.set_data(0)
            self.carried_n = n
        return self.carried

    def forward_gpu(self, bottom, top):
        n = bottom[0].shape[1]
        rows, gates, size = self.T * n, self.gates * self.num_output, n * self.num_output
        pre = self.pre_blob.mutable_gpu_data
        blas.gemm(False, True, rows, gates, self.inputs, 1, bottom[0].gpu_data,
                  self.blobs[0].gpu_data, 0, pre)
        blas.bias_forward(rows, gates, 1, self.blobs[1].gpu_data, pre)
        if self.static_input:   # the same W_static x_static added at every step
            blas.gemm(False, True, n, gates, self.static_inputs, 1, bottom[2].gpu_data,
                      self.blobs[2].gpu_data, 1, pre, batch=self.T, stride_c=n * gates)
        initial = (bottom[self.state_offset:] if self.expose_hidden else self._carried(n))
        for states, blob in zip(self.state_blobs, initial):
            blas.copy(size, blob.gpu_data, states.mutable_gpu_data)
        self.steps_forward_gpu(n, bottom[1].gpu_data, top[0])
        for states, blob in zip(self.state_blobs, top[1:] if self.expose_hidden else self.carried):
            blas.copy(size, at(states.gpu_data, self.T * size), blob.mutable_gpu_data)
        if self.debug_info:
            self._debug_forward(top)

    def step_input_gpu(self, t, n, cont):
        """pre_t += (cont_t h_{t-1}) W_h^T on the device, keeping cont_t h_{t-1} for backward."""
        h, size = self.num_output, n * self.num_output
        masked = at(self.masked_blob.mutable_gpu_data, t * size)
        self.launch_1d("recurrent_mask", size, at(cont, t * n),
                       at(self.state_blobs[0].gpu_data, t * size), masked, np.int32(h))
        blas.gemm(False, True, n, self.gates * h, h, 1, masked,
                  self.blobs[self.recurrent_weight].gpu_data, 1,
                  at(self.pre_blob.mutable_gpu_data, t * n * self.gates * h))

    # -- backward ------------------------------------------------------------------------------
    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            bottom[1].diff[...] = 0  # cont is an indicator: Caffe sends it no gradient
        n = bottom[0].shape[1]
        if self.expose_hidden:
            d_final = [t.diff[0] for t in top[1:]]
        else:
            d_final = [np.zeros((n, self.num_output), self.dtype) for _ in self.state_names]
        d_pre, d_initial = self.steps_backward(top[0].diff, bottom[1].data[..., None], d_final)
        d_rows = d_pre.reshape(-1, d_pre.shape[-1])
        x = bottom[0].data.reshape(-1, self.inputs)
        self.blobs[0].diff += d_rows.T @ x
        self.blobs[1].diff += d_rows.sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff.reshape(x.shape)[...] = d_rows @ self.blobs[0].data
        if self.static_input:
            d_static = d_pre.sum(axis=0)
            xs = bottom[2].data.reshape(n, -1)
            self.blobs[2].diff += d_static.T @ xs
            if propagate_down[2]:
                bottom[2].diff.reshape(xs.shape)[...] = d_static @ self.blobs[2].data
        for i, d in enumerate(d_initial if self.expose_hidden else ()):
            if propagate_down[self.state_offset + i]:
                bottom[self.state_offset + i].diff[0] = d
        self._debug_backward(propagate_down, bottom)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            bottom[1].zero_diff()  # cont is an indicator: Caffe sends it no gradient
        n = bottom[0].shape[1]
        rows, gates, size = self.T * n, self.gates * self.num_output, n * self.num_output
        for i, d_state in enumerate(self.d_state):
            if self.expose_hidden:
                blas.copy(size, top[1 + i].gpu_diff, d_state.mutable_gpu_data)
            else:
                blas.fill(size, 0, d_state.mutable_gpu_data)
        self.steps_backward_gpu(n, top[0].gpu_diff, bottom[1].gpu_data)
        d_pre, x = self.d_pre_blob.gpu_data, bottom[0].gpu_data
        w_h = self.blobs[self.recurrent_weight]
        blas.gemm(True, False, gates, self.num_output, rows, 1, d_pre, self.masked_blob.gpu_data,
                  1, w_h.mutable_gpu_diff)
        blas.gemm(True, False, gates, self.inputs, rows, 1, d_pre, x, 1,
                  self.blobs[0].mutable_gpu_diff)
        blas.bias_backward(rows, gates, 1, d_pre, self.blobs[1].mutable_gpu_diff)
        if propagate_down[0]:
            blas.gemm(False, False, rows, self.inputs, gates, 1, d_pre, self.blobs[0].gpu_data, 0,
                      bottom[0].mutable_gpu_diff)
        if self.static_input:
            d_static = self.d_static.mutable_gpu_data
            blas.gemv(True, self.T, n * gates, 1, d_pre, self.ones.gpu_data, 0, d_static)
            blas.gemm(True, False, gates, self.static_inputs, n, 1, d_static, bottom[2].gpu_data,
                      1, self.blobs[2].mutable_gpu_diff)
            if propagate_down[2]:
                blas.gemm(False, False, n, self.static_inputs, gates, 1, d_static,
                          self.blobs[2].gpu_data, 0, bottom[2].mutable_gpu_diff)
        for i, d_state in enumerate(self.d_state if self.expose_hidden else ()):
            if propagate_down[self.state_offset + i]:
                blas.copy(size, d_state.gpu_data, bottom[self.state_offset + i].mutable_gpu_diff)
        if self.debug_info:
            self._debug_backward(propagate_down, bottom)

    def step_state_grad_gpu(self, t, n, cont, d_pre_t, d_h):
        """d_h = cont_t (d_pre_t W_h) on the device: the gradient reaching h_{t-1} via step t."""
        h = self.num_output
        blas.gemm(False, False, n, h, self.gates * h, 1, d_pre_t,
                  self.blobs[self.recurrent_weight].gpu_data, 0, d_h)
        self.launch_1d("recurrent_mask", n * h, at(cont, t * n), d_h, d_h, np.int32(h))

    # -- debug_info ----------------------------------------------------------------------------
    def _debug_forward(self, top):
        self._debug("Forward", [(f"top {t.name or i}", t.cpu_data) for i, t in enumerate(top)])

    def _debug_backward(self, propagate_down, bottom):
        if self.debug_info:
            self._debug("Backward", [(f"bottom {b.name or i}", b.cpu_diff)
                                     for i, b in enumerate(bottom) if propagate_down[i]]
                        + [(f"param {i}", b.cpu_diff) for i, b in enumerate(self.blobs)])

    def _debug(self, stage, named_arrays):
        """debug_info: log the mean absolute value of each array, as Caffe's net debug info (on
        the device this copies them to the host: the user asked to see them)."""
        if self.debug_info:
            for what, a in named_arrays:
                log.info("    [%s] Layer %s, %s: %.6g", stage, self.name, what,
                         float(np.abs(a).mean()) if a.size else 0.0)

    # -- the recurrence (subclasses) -------------------------------------------------------------
    def steps_forward(self, pre, cont, states):
        """pre (T, N, G*H), cont (T, N, 1), states: list of (N, H) initial states.
        Return the output (T, N, H) and the list of final states; keep what backward needs."""
        raise NotImplementedError

    def steps_backward(self, d_out, cont, d_final):
        """From the output's gradient and the final states' gradients, add to the gradients of
        W_h and the subclass's own parameters; return d_pre (T, N, G*H) and the list of
        gradients of the initial states."""
        raise NotImplementedError

    def steps_forward_gpu(self, n, cont, out):
        """The device twin of ``steps_forward``: from pre_blob (T, N, G*H) and the initial states
        in row 0 of each state blob, fill rows 1..T of the state blobs and the output blob
        ``out`` (T, N, H); keep in layer blobs what backward needs (``step_input_gpu`` gives
        each step its recurrent input)."""
        raise NotImplementedError

    def steps_backward_gpu(self, n, d_out, cont):
        """The device twin of ``steps_backward``: from d_out (T, N, H) and the final states'
        gradients in ``d_state``, write d_pre_blob, add to the gradients of the subclass's own
        parameters (the base adds W_h's) and leave the initial states' gradients in
        ``d_state`` (``step_state_grad_gpu`` carries the gradient back through a step)."""
        raise NotImplementedError


def at(ptr, offset):
    """The device pointer ``offset`` float32 elements past ``ptr``."""
    return ptr + 4 * offset


def shifted(states, initial):
    """The state before each step: (T, N, H) rows s_{t-1}, starting with the initial state."""
    return np.concatenate([initial[None], states[:-1]])
