"""BatchReindex: gathers items of a batch by index (a permutation, a subset, repeats)."""

import numpy as np

from .base import Layer
from .registry import register_layer


@register_layer("BatchReindex")
class BatchReindex(Layer):
    """y[j] = x[idx[j]]  for j < M, each idx[j] an integer (truncated, as C's int cast) in 0..N-1.

    bottom[0]: x, shape (N, ...).   bottom[1]: idx, shape (M,).
    top: shape (M,) + x.shape[1:].
    backward: dx[n] = sum over j with idx[j] = n of dy[j] (0 for items never picked); no
    gradient to the indices.
    Device: cuda/structure.cu; backward gathers, for each item n, the dy[j] with idx[j] = n in
    increasing j (no atomics: the CPU's order, deterministic). An index out of range cannot be
    reported from the device: its top item becomes NaN.
    """

    num_bottom, num_top = 2, 1
    has_gpu = True
    kernels = "structure.cu"

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        x, idx = bottom
        self.require(idx.num_axes == 1, f"bottom[1] (the indices) has shape {idx.shape}; it "
                     "must be 1-D")
        self.require(x.num_axes >= 1, "bottom[0] needs at least one axis")
        top[0].reshape(idx.shape + x.shape[1:])

    def _indices(self, bottom):
        idx, n = bottom[1].data, bottom[0].shape[0]
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            self.fail(f"index {idx[j]:g} at position {j} of bottom[1] is outside 0..{n - 1} "
                      f"(bottom[0] has {n} items)")
        return idx.astype(np.int64)

    def forward_cpu(self, bottom, top):
        self.index = self._indices(bottom)
        top[0].data[...] = bottom[0].data[self.index]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            self.fail("cannot back-propagate to the indices (bottom[1])")
        if propagate_down[0]:
            bottom[0].diff[...] = 0
            np.add.at(bottom[0].diff, self.index, top[0].diff)

    def forward_gpu(self, bottom, top):
        x, idx = bottom
        self.launch_1d("batch_reindex_forward", top[0].count, x.gpu_data, idx.gpu_data,
                       np.int32(x.shape[0]), np.int32(x.count_range(1)), top[0].mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            self.fail("cannot back-propagate to the indices (bottom[1])")
        if propagate_down[0]:
            x, idx = bottom
            self.launch_rows("batch_reindex_backward", x.shape[0],
                             np.int32(x.shape[0]), np.int32(x.count_range(1)), np.int32(idx.count),
                             idx.gpu_data, top[0].gpu_diff, x.mutable_gpu_diff)
