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

Gradients: x, x_static and every parameter, as Caffe. With expose_hidden the initial states
also get their gradient and the final-state tops' gradients flow back through the steps;
Caffe shares only the data of those blobs with its unrolled net, so it back-propagates
through neither (a deliberate difference). cont never gets a gradient (its diff is zeroed).
"""

import logging

import numpy as np

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
        self.carried = None

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
        if self.expose_hidden:
            for blob, state in zip(top[1:], final):
                blob.data[0] = state
        else:
            self.carried = [s.copy() for s in final]
        self._debug("Forward", [(f"top {t.name or i}", t.data) for i, t in enumerate(top)])

    def _initial_states(self, bottom, n):
        if self.expose_hidden:
            return [b.data[0] for b in bottom[self.state_offset:]]
        if self.carried is None or self.carried[0].shape[0] != n:
            self.carried = [np.zeros((n, self.num_output), self.dtype) for _ in self.state_names]
        return self.carried

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
        self._debug("Backward", [(f"bottom {b.name or i}", b.diff)
                                 for i, b in enumerate(bottom) if propagate_down[i]]
                    + [(f"param {i}", b.diff) for i, b in enumerate(self.blobs)])

    def _debug(self, stage, named_arrays):
        """debug_info: log the mean absolute value of each array, as Caffe's net debug info."""
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


def shifted(states, initial):
    """The state before each step: (T, N, H) rows s_{t-1}, starting with the initial state."""
    return np.concatenate([initial[None], states[:-1]])
