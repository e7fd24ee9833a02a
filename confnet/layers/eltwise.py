"""Eltwise: combine blobs of one shape element by element."""

import numpy as np

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
    """

    params = ("eltwise_param",)
    min_bottom = 2
    num_top = 1

    def layer_setup(self, bottom, top):
        ep = self.param.eltwise_param
        self.op = ep.operation
        self.require(not ep.coeff or len(ep.coeff) == len(bottom),
                     f"has {len(ep.coeff)} coeff values for {len(bottom)} bottoms (give one each)")
        self.require(self.op == SUM or not ep.coeff, "coeff is only for operation SUM")
        self.coeffs = list(ep.coeff) or [1.0] * len(bottom)
        self.stable_prod_grad = ep.stable_prod_grad

    def reshape(self, bottom, top):
        for i, blob in enumerate(bottom[1:], 1):
            self.require(blob.shape == bottom[0].shape, f"bottom[{i}] has shape {blob.shape}, "
                         f"bottom[0] {bottom[0].shape}; they must be equal")
        self.require(self.op != PROD or all(b is not top[0] for b in bottom),
                     "PROD cannot be computed in place (backward needs the inputs)")
        top[0].reshape_like(bottom[0])

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
