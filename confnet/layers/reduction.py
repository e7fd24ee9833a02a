"""Reduction: sum (or mean, absolute sum, sum of squares) over all axes from one on."""

import numpy as np

from ..proto import confnet_pb2 as pb
from .base import Layer
from .registry import register_layer

SUM, ASUM = pb.ReductionParameter.SUM, pb.ReductionParameter.ASUM
SUMSQ, MEAN = pb.ReductionParameter.SUMSQ, pb.ReductionParameter.MEAN
_KERNEL_OP = {SUM: 0, MEAN: 0, ASUM: 1, SUMSQ: 2}   # the term cuda/reduction.cu sums


@register_layer("Reduction")
class Reduction(Layer):
    """With x viewed as (M, D): M = product of the dimensions before reduction_param.axis
    (default 0), D = product of those from it on:
        SUM (default)  y[m] = coeff * sum_d x[m, d]
        ASUM           y[m] = coeff * sum_d |x[m, d]|
        SUMSQ          y[m] = coeff * sum_d x[m, d]^2
        MEAN           y[m] = coeff / D * sum_d x[m, d]

    bottom: 1 blob, any shape.   top: shape[:axis] (axis 0: a scalar).
    backward: dx[m, d] = c * dy[m] * (1 | sign(x[m, d]) | 2 x[m, d] | 1) for
    (SUM | ASUM | SUMSQ | MEAN), c = coeff (coeff / D for MEAN); sign(0) = 0.
    Device: cuda/reduction.cu, one block per row m (a deterministic block reduction).
    """

    params = ("reduction_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "reduction.cu"

    def layer_setup(self, bottom, top):
        p = self.param.reduction_param
        self.op = p.operation
        self.require(self.op in (SUM, ASUM, SUMSQ, MEAN), f"unknown operation {self.op}")

    def reshape(self, bottom, top):
        p = self.param.reduction_param
        self.axis = bottom[0].canonical_axis(p.axis)
        self.dims = (bottom[0].count_range(0, self.axis), bottom[0].count_range(self.axis))
        top[0].reshape(bottom[0].shape[:self.axis])
        self.coeff = float(p.coeff) / (self.dims[1] if self.op == MEAN else 1)

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.dims)
        if self.op == ASUM:
            x = np.abs(x)
        elif self.op == SUMSQ:
            x = x * x
        top[0].data[...] = (self.coeff * x.sum(axis=1)).reshape(top[0].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        scale = self.coeff * top[0].diff.reshape(-1, 1)
        x = bottom[0].data.reshape(self.dims)
        if self.op == ASUM:
            dx = scale * np.sign(x)
        elif self.op == SUMSQ:
            dx = 2.0 * scale * x
        else:
            dx = np.broadcast_to(scale, self.dims)
        bottom[0].diff[...] = dx.reshape(bottom[0].shape)

    def forward_gpu(self, bottom, top):
        rows, dim = self.dims
        self.launch_rows("reduction_forward", rows, np.int32(rows),
                         np.int32(dim), bottom[0].gpu_data, top[0].mutable_gpu_data,
                         np.int32(_KERNEL_OP[self.op]), np.float32(self.coeff))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x = bottom[0]
            self.launch_1d("reduction_backward", x.count, x.gpu_data, top[0].gpu_diff,
                           x.mutable_gpu_diff, np.int32(self.dims[1]),
                           np.int32(_KERNEL_OP[self.op]), np.float32(self.coeff))
