"""Filter: keeps the items of a batch whose selector is non-zero."""

import numpy as np

from ..gpu import blas
from .base import Layer
from .registry import register_layer


@register_layer("Filter")
class Filter(Layer):
    """top_i = bottom_i[S], S = the item indices n (in order) where selector[n] != 0.

    bottom: K >= 1 blobs to filter, shapes (N, ...), then the selector: N values, shape (N,) or
    (N, 1, ..., 1).   top: K blobs, top_i of shape (len(S),) + bottom_i.shape[1:].
    S is read from the selector in reshape, which the net runs before every forward; at set up,
    before any data has arrived, the tops get all N items (as in Caffe).
    backward: dbottom_i[S[j]] = dtop_i[j]; items that were filtered out get zero. No gradient to
    the selector.
    Device: S is known on the host (the top shapes depend on it, as in Caffe, which reads the
    selector on the host too); forward copies it to the device (len(S) values) and gathers the
    items there (cuda/structure.cu).
    """

    min_bottom, min_top = 2, 1
    has_gpu = True
    kernels = "structure.cu"

    def layer_setup(self, bottom, top):
        self.require(len(top) == len(bottom) - 1,
                     f"needs one top per filtered bottom: {len(bottom) - 1} bottom(s) besides the "
                     f"selector, {len(top)} top(s)")
        self.selector_index = len(bottom) - 1
        self.selected = None
        self.index = self.new_blob()   # device: S, as floats

    def allow_force_backward(self, bottom_index):
        return bottom_index != self.selector_index

    def reshape(self, bottom, top):
        selector = bottom[-1]
        self.require(selector.num_axes >= 1 and all(d == 1 for d in selector.shape[1:]),
                     f"the selector (last bottom) has shape {selector.shape}; all its dimensions "
                     "but the first must be 1")
        n = selector.shape[0]
        for i, blob in enumerate(bottom[:-1]):
            self.require(blob.num_axes >= 1 and blob.shape[0] == n,
                         f"bottom[{i}] {blob.shape} needs the selector's first dimension {n}")
        first = self.selected is None
        self.selected = np.flatnonzero(selector.cpu_data.reshape(-1))
        kept = n if first else len(self.selected)
        for blob, out in zip(bottom, top):
            out.reshape((kept,) + blob.shape[1:])

    def forward_cpu(self, bottom, top):
        for blob, out in zip(bottom, top):
            out.data[...] = blob.data[self.selected]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[self.selector_index]:
            self.fail("cannot back-propagate to the selector (the last bottom)")
        for blob, out, down in zip(bottom, top, propagate_down):
            if down:
                blob.diff[...] = 0
                blob.diff[self.selected] = out.diff

    def forward_gpu(self, bottom, top):
        self.index.reshape(self.selected.shape)
        if self.selected.size:
            self.index.set_data(self.selected.astype(np.float32))
        for blob, out in zip(bottom, top):
            self.launch_1d("filter_forward", out.count, blob.gpu_data, self.index.gpu_data,
                           np.int32(blob.shape[0]), np.int32(blob.count_range(1)),
                           out.mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[self.selector_index]:
            self.fail("cannot back-propagate to the selector (the last bottom)")
        for blob, out, down in zip(bottom, top, propagate_down):
            if down:
                blas.fill(blob.count, 0, blob.mutable_gpu_diff)
                self.launch_1d("filter_backward", out.count, out.gpu_diff, self.index.gpu_data,
                               np.int32(blob.count_range(1)), blob.mutable_gpu_diff)
