"""ArgMax: the indices (and optionally the values) of the top_k largest entries."""

import numpy as np

from .base import Layer
from .registry import register_layer


@register_layer("ArgMax")
class ArgMax(Layer):
    """Without argmax_param.axis, each item n of x (shape (N, ...)) is flattened to D values and
        top[n, 0, j] = the index of the j-th largest value (j < top_k)
        top[n, 1, j] = that value                              (only with out_max_val)
    top shape: (N, 1 or 2, top_k), padded with trailing 1s to the bottom's number of axes.
    With axis, the ranking runs along that axis: top has the bottom's shape with that axis
    replaced by top_k, holding the indices, or the values instead when out_max_val is set.
    Equal values rank the higher index first (Caffe's sort of (value, index) pairs). Indices are
    stored as floats.

    bottom: 1 blob.   top: 1 blob as above.
    backward: none (not differentiable); back-propagating into it is an error.
    Device: cuda/reduction.cu, one thread per ranked row (top_k scans of it).
    """

    params = ("argmax_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "reduction.cu"

    def layer_setup(self, bottom, top):
        p = self.param.argmax_param
        self.out_max_val = p.out_max_val
        self.top_k = int(p.top_k)
        self.has_axis = p.HasField("axis")
        self.require(self.top_k >= 1, "top_k must be at least 1")

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        x = bottom[0]
        if self.has_axis:
            self.axis = x.canonical_axis(self.param.argmax_param.axis)
            self.dims = (x.count_range(0, self.axis), x.shape[self.axis],
                         x.count_range(self.axis + 1))
            shape = list(x.shape)
            shape[self.axis] = self.top_k
        else:
            self.require(x.num_axes >= 1, "needs a bottom with at least one axis")
            self.dims = (x.shape[0], x.count_range(1), 1)
            shape = [1] * max(x.num_axes, 3)
            shape[0], shape[1], shape[2] = x.shape[0], 2 if self.out_max_val else 1, self.top_k
        self.require(self.top_k <= self.dims[1],
                     f"top_k {self.top_k} is more than the {self.dims[1]} values it ranks")
        top[0].reshape(shape)

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.dims)
        # A stable sort of the reversed axis puts the higher index first among equal values.
        reversed_order = np.argsort(-x[:, ::-1, :], axis=1, kind="stable")[:, :self.top_k, :]
        index = self.dims[1] - 1 - reversed_order
        value = np.take_along_axis(x, index, axis=1)
        if self.has_axis:
            out = value if self.out_max_val else index
        elif self.out_max_val:
            out = np.concatenate([index, value], axis=1)  # (N, 2 * top_k, 1): indices, values
        else:
            out = index
        top[0].data[...] = out.reshape(top[0].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if any(propagate_down):
            self.fail("has no gradient; do not back-propagate into it")

    def forward_gpu(self, bottom, top):
        outer, dim, inner = self.dims
        with_index = not (self.has_axis and self.out_max_val)
        self.launch_1d("argmax_forward", outer * inner, bottom[0].gpu_data,
                       top[0].mutable_gpu_data, np.int32(dim), np.int32(inner),
                       np.int32(self.top_k), np.int32(with_index), np.int32(self.out_max_val))

    def backward_gpu(self, top, propagate_down, bottom):
        self.backward_cpu(top, propagate_down, bottom)
