"""Eltwise: combine blobs of one shape element by element."""

import numpy as np

from ..gpu import blas
from ..proto import confnet_pb2 as pb
from .base import Layer
from .registry import register_layer

PROD, SUM, MAX = pb.EltwiseParameter.PROD, pb.EltwiseParameter.SUM, pb.EltwiseParameter.MAX


@register_layer("Eltwise")
class Eltwise(Layer):
    """eltwise_param.operation over bottoms x_0 .. x_{n-1}:
        SUM (default): y = sum_i c_i x_i, coefficients c_i from coeff (one per bottom, default 1)
        PROD:          y = prod_i x_i
        MAX:           y = max_i x_i; the winner of each element is remembered for backward. Ties
                       go as in Caffe: between x_0 and x_1 to x_1, after that to the earlier one.

    bottom: 2 or more blobs of one shape.   top: 1 blob, same shape (in place only for SUM, MAX).
    backward: SUM dx_i = c_i dy;  PROD dx_i = dy * prod_{j != i} x_j (stable_prod_grad, default)
    or dy * y / x_i;  MAX dx_i = dy where x_i won, else 0.
    Device: cuda/eltwise.cu and blas.py, folding the bottoms in one at a time in bottom order.
    """

    params = ("eltwise_param",)
    min_bottom = 2
    num_top = 1
    has_gpu = True
    kernels = "eltwise.cu"

    def layer_setup(self, bottom, top):
        ep = self.param.eltwise_param
        self.op = ep.operation
        self.require(not ep.coeff or len(ep.coeff) == len(bottom),
                     f"has {len(ep.coeff)} coeff values for {len(bottom)} bottoms (give one each)")
        self.require(self.op == SUM or not ep.coeff, "coeff is only for operation SUM")
        self.coeffs = list(ep.coeff) or [1.0] * len(bottom)
        self.stable_prod_grad = ep.stable_prod_grad
        # Device buffers: MAX's winners; in place, a copy of the bottom the top overwrites (when
        # the fold reaches it too late) and of dy (overwritten by that bottom's diff).
        self.winner_blob = self.new_blob(dtype=np.int32)
        self.kept, self.kept_dy = self.new_blob(), self.new_blob()

    def reshape(self, bottom, top):
        for i, blob in enumerate(bottom[1:], 1):
            self.require(blob.shape == bottom[0].shape, f"bottom[{i}] has shape {blob.shape}, "
                         f"bottom[0] {bottom[0].shape}; they must be equal")
        self.require(self.op != PROD or all(b is not top[0] for b in bottom),
                     "PROD cannot be computed in place (backward needs the inputs)")
        top[0].reshape_like(bottom[0])
        if self.op == MAX:
            self.winner_blob.reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        xs = [b.data for b in bottom]
        if self.op == SUM:
            y = sum(c * x for c, x in zip(self.coeffs, xs))
        elif self.op == PROD:
            y = np.prod(xs, axis=0)
        else:
            # Caffe's order of comparison: x_1 wins a tie with x_0, later ties keep the earlier.
            order = [1, 0] + list(range(2, len(xs)))
            stacked = np.stack([xs[i] for i in order])
            first = stacked.argmax(axis=0)
            self.winner = np.take(order, first)
            y = np.take_along_axis(stacked, first[None], axis=0)[0]
        top[0].data[...] = y

    def backward_cpu(self, top, propagate_down, bottom):
        dy = top[0].diff
        if any(b is top[0] for b in bottom):
            dy = dy.copy()  # in place, dy is also a bottom's diff, which is overwritten below
        for i, (blob, down) in enumerate(zip(bottom, propagate_down)):
            if not down:
                continue
            if self.op == SUM:
                dx = self.coeffs[i] * dy
            elif self.op == PROD:
                dx = dy * self.prod_others(bottom, top, i)
            else:
                dx = np.where(self.winner == i, dy, 0)
            blob.diff[...] = dx

    def prod_others(self, bottom, top, i):
        if self.stable_prod_grad:
            return np.prod([b.data for j, b in enumerate(bottom) if j != i], axis=0)
        return top[0].data / bottom[i].data

    def _inputs_gpu(self, bottom, top):
        """Device pointers of the bottoms' data, safe to read while the fold writes the top: a
        bottom that is the top and comes after the first two is read from a copy."""
        pointers = [b.gpu_data for b in bottom]
        for i, blob in enumerate(bottom[2:], 2):
            if blob is top[0]:
                self.kept.reshape_like(blob)
                self.kept.copy_from(blob)
                pointers[i] = self.kept.gpu_data
        return pointers

    def forward_gpu(self, bottom, top):
        n, y = top[0].count, top[0].mutable_gpu_data
        xs = self._inputs_gpu(bottom, top)
        if self.op == SUM:
            c = [np.float32(v) for v in self.coeffs]
            self.launch_1d("eltwise_forward_sum", n, c[0], xs[0], c[1], xs[1], y)
            for ci, x in zip(c[2:], xs[2:]):
                blas.axpy(n, ci, x, y)
        elif self.op == PROD:
            blas.mul(n, xs[0], xs[1], y)
            for x in xs[2:]:
                blas.mul(n, y, x, y)
        else:
            winner = self.winner_blob.mutable_gpu_data
            self.launch_1d("eltwise_forward_max_first", n, xs[0], xs[1], y, winner)
            for i, x in enumerate(xs[2:], 2):
                self.launch_1d("eltwise_forward_max", n, x, np.int32(i), y, winner)

    def backward_gpu(self, top, propagate_down, bottom):
        n, dy = top[0].count, top[0].gpu_diff
        if any(b is top[0] for b in bottom):
            # In place, dy is also a bottom's diff, which is overwritten below.
            self.kept_dy.reshape_like(top[0])
            self.kept_dy.copy_from(top[0], diff=True)
            dy = self.kept_dy.gpu_diff
        for i, (blob, down) in enumerate(zip(bottom, propagate_down)):
            if not down:
                continue
            dx = blob.mutable_gpu_diff
            if self.op == SUM:
                blas.axpby(n, self.coeffs[i], dy, 0, dx)
            elif self.op == MAX:
                self.launch_1d("eltwise_backward_max", n, dy, self.winner_blob.gpu_data, np.int32(i),
                               dx)
            elif self.stable_prod_grad:
                self._prod_others_gpu(bottom, i, dx)
                blas.mul(n, dy, dx, dx)
            else:
                self.launch_1d("eltwise_backward_prod", n, dy, top[0].gpu_data, blob.gpu_data, dx)

    def _prod_others_gpu(self, bottom, i, out):
        """out = the product of the bottoms other than i, in bottom order."""
        n = bottom[0].count
        others = [b.gpu_data for j, b in enumerate(bottom) if j != i]
        if len(others) == 1:
            blas.copy(n, others[0], out)
            return
        blas.mul(n, others[0], others[1], out)
        for x in others[2:]:
            blas.mul(n, out, x, out)
