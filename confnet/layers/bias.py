"""Bias: add a blob, broadcast along the axes it lines up with. Also home of the broadcasting
helpers Scale shares."""

from ..gpu import blas
from .base import Layer
from .registry import register_layer


def learned_shape(layer, blob, axis, num_axes):
    """Shape of a learned operand covering ``num_axes`` axes of ``blob`` from ``axis`` (-1: all
    the rest), as Caffe's Bias and Scale layers make it."""
    axis = canonical_axis(layer, blob, axis)
    layer.require(num_axes >= -1, f"num_axes must be >= 0, or -1 for all axes from axis; "
                                  f"got {num_axes}")
    end = blob.num_axes if num_axes == -1 else axis + num_axes
    layer.require(end <= blob.num_axes,
                  f"{num_axes} axes from axis {axis} run past the input shape {blob.shape}")
    return blob.shape[axis:end]


def canonical_axis(layer, blob, axis):
    n = blob.num_axes
    layer.require(-n <= axis < max(n, 1),
                  f"axis {axis} is out of range for an input of shape {blob.shape}")
    return axis % n if n else 0


def broadcast_dims(layer, blob, axis, operand_shape):
    """(outer, dim, inner): ``blob`` viewed as (outer, dim, inner) lines up with an operand of
    ``operand_shape`` (dim elements) placed at ``axis``; a scalar operand ignores ``axis``."""
    axis = 0 if not operand_shape else canonical_axis(layer, blob, axis)
    covered = blob.shape[axis:axis + len(operand_shape)]
    layer.require(covered == tuple(operand_shape),
                  f"an operand of shape {tuple(operand_shape)} does not line up with the input "
                  f"shape {blob.shape} from axis {axis}")
    return (blob.count_range(0, axis), blob.count_range(axis, axis + len(operand_shape)),
            blob.count_range(axis + len(operand_shape)))


@register_layer("Bias")
class Bias(Layer):
    """y = x + b, with b of shape x.shape[axis : axis + b.ndim] broadcast over the other axes.

    b is bottom[1] when given, else a learned parameter of shape x.shape[axis : axis + num_axes]
    (num_axes -1: to the end), filled by ``filler`` (default constant 0). A scalar b (0 axes)
    adds to every element.

    bottom: x, any shape; optionally b.   top: same shape as x (may be in place).
    backward: dx = dy; db = dy summed over the axes b is broadcast along (added into the
    parameter's diff, written into bottom[1]'s).
    Device: blas.py's per-channel bias add and its deterministic per-channel sum; no kernel of
    its own.
    """

    params = ("bias_param",)
    min_bottom, max_bottom = 1, 2
    num_top = 1
    has_gpu = True

    def layer_setup(self, bottom, top):
        p = self.param.bias_param
        if len(bottom) == 1:
            self.add_param_blob(learned_shape(self, bottom[0], p.axis, p.num_axes), p.filler)

    def operand(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        b = self.operand(bottom)
        self.dims = broadcast_dims(self, bottom[0], self.param.bias_param.axis, b.shape)
        top[0].reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        b = self.operand(bottom).data.reshape(1, -1, 1)
        top[0].data.reshape(self.dims)[...] = bottom[0].data.reshape(self.dims) + b

    def backward_cpu(self, top, propagate_down, bottom):
        dy = top[0].diff.reshape(self.dims)
        db = dy.sum(axis=(0, 2)).reshape(self.operand(bottom).shape)
        if len(bottom) == 1:
            self.blobs[0].diff += db
        elif propagate_down[1]:
            bottom[1].diff[...] = db
        if propagate_down[0] and bottom[0] is not top[0]:
            bottom[0].diff[...] = top[0].diff

    def forward_gpu(self, bottom, top):
        x, y = bottom[0], top[0]
        blas.copy(x.count, x.gpu_data, y.mutable_gpu_data)
        blas.bias_forward(*self.dims, self.operand(bottom).gpu_data, y.mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        dy = top[0].gpu_diff
        if len(bottom) == 1:
            blas.bias_backward(*self.dims, dy, self.blobs[0].mutable_gpu_diff)
        elif propagate_down[1]:
            blas.fill(bottom[1].count, 0, bottom[1].mutable_gpu_diff)
            blas.bias_backward(*self.dims, dy, bottom[1].mutable_gpu_diff)
        if propagate_down[0]:
            blas.copy(bottom[0].count, dy, bottom[0].mutable_gpu_diff)
