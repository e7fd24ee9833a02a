"""Embed: a lookup table of learnable vectors, indexed by integers (one-hot InnerProduct)."""

import numpy as np

from ..gpu import blas
from .base import Layer
from .registry import register_layer


@register_layer("Embed")
class Embed(Layer):
    """y[..., :] = W[i[...], :] + b   for every integer index i in 0..K-1 (K = input_dim).

    bottom: indices, any shape, integer values stored as floats.
    top: bottom.shape + (N,), N = num_output.
    params: weight W (K, N) (transposed from InnerProduct's layout: one row per index), filled
    by embed_param.weight_filler; bias b (N,) when bias_term (default), filled by bias_filler.
    backward: dW[k] += sum of dy over the positions whose index is k; db += sum of dy over all
    positions. The indices get no gradient (back-propagating to them is an error).
    Device: cuda/structure.cu; dW is gathered per row k from the positions whose index is k, in
    increasing position (no atomics: the CPU's order, deterministic). An index that is not an
    integer in 0..K-1 cannot be reported from the device: its output row becomes NaN.
    """

    params = ("embed_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "structure.cu"

    def layer_setup(self, bottom, top):
        p = self.param.embed_param
        self.num_output, self.input_dim = int(p.num_output), int(p.input_dim)
        self.require(self.num_output > 0, "num_output must be set to a positive number")
        self.require(self.input_dim > 0, "input_dim must be set to a positive number")
        self.add_param_blob((self.input_dim, self.num_output), p.weight_filler)
        self.bias_term = p.bias_term
        if self.bias_term:
            self.add_param_blob((self.num_output,), p.bias_filler)

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, blob):
        x = blob.data.reshape(-1)
        index = x.astype(np.int64)
        bad = (index != x) | (index < 0) | (index >= self.input_dim)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            where = tuple(int(i) for i in np.unravel_index(j, blob.shape))
            self.fail(f"input {x[j]:g} at index {where} is not an integer in "
                      f"0..{self.input_dim - 1} (input_dim {self.input_dim})")
        return index

    def forward_cpu(self, bottom, top):
        self.index = self._indices(bottom[0])
        y = self.blobs[0].data[self.index]
        if self.bias_term:
            y = y + self.blobs[1].data
        top[0].data[...] = y.reshape(top[0].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.fail("cannot back-propagate to the indices (bottom[0])")
        dy = top[0].diff.reshape(-1, self.num_output)
        np.add.at(self.blobs[0].diff, self.index, dy)
        if self.bias_term:
            self.blobs[1].diff += dy.sum(axis=0)

    def forward_gpu(self, bottom, top):
        y = top[0]
        self.launch_1d("embed_forward", y.count, self.blobs[0].gpu_data, bottom[0].gpu_data,
                       np.int32(self.input_dim), np.int32(self.num_output), y.mutable_gpu_data)
        if self.bias_term:
            blas.bias_forward(bottom[0].count, self.num_output, 1, self.blobs[1].gpu_data,
                              y.mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.fail("cannot back-propagate to the indices (bottom[0])")
        dy, positions = top[0].gpu_diff, bottom[0].count
        self.launch_rows("embed_backward", self.input_dim,
                         np.int32(self.input_dim), np.int32(self.num_output), np.int32(positions),
                         bottom[0].gpu_data, dy, self.blobs[0].mutable_gpu_diff)
        if self.bias_term:
            blas.bias_backward(positions, self.num_output, 1, dy, self.blobs[1].mutable_gpu_diff)
