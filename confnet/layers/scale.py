"""Scale: multiply by a blob broadcast along the axes it lines up with (optionally plus a bias)."""

import numpy as np

from ..gpu import blas
from ..proto import confnet_pb2 as pb
from .base import Layer
from .bias import broadcast_dims, learned_shape
from .registry import register_layer


@register_layer("Scale")
class Scale(Layer):
    """y = x * s (+ b with bias_term), s of shape x.shape[axis : axis + s.ndim] broadcast over
    the other axes.

    s is bottom[1] when given, else a learned parameter of shape x.shape[axis : axis + num_axes]
    (num_axes -1: to the end), filled by ``filler`` (default constant 1). A scalar s (0 axes)
    multiplies every element. With bias_term a learned b of the same shape as s is added,
    filled by ``bias_filler`` (default constant 0).

    bottom: x, any shape; optionally s.   top: same shape as x (may be in place; x is then kept
    for backward).   params: [s] (one bottom), then [b] with bias_term.
    backward: dx = dy * s; ds = sum of dy * x over the broadcast axes; db = sum of dy over them.
    Parameter gradients are added into their diff; bottom[1]'s diff is written.
    Device: cuda/scale.cu (ds by one deterministic block reduction per element of s) and
    blas.bias_backward for db.
    """

    params = ("scale_param",)
    min_bottom, max_bottom = 1, 2
    num_top = 1
    has_gpu = True
    kernels = "scale.cu"

    def layer_setup(self, bottom, top):
        p = self.param.scale_param
        if len(bottom) == 1:
            shape = learned_shape(self, bottom[0], p.axis, p.num_axes)
            filler = p.filler if p.HasField("filler") else pb.FillerParameter(type="constant",
                                                                               value=1)
            self.add_param_blob(shape, filler)
        if p.bias_term:
            self.add_param_blob(self.operand(bottom).shape, p.bias_filler)
        self.kept = None
        self.kept_blob = self.new_blob()   # device: x, kept when computing in place

    def operand(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        p = self.param.scale_param
        s = self.operand(bottom)
        self.dims = broadcast_dims(self, bottom[0], p.axis, s.shape)
        if p.bias_term:
            self.require(self.blobs[-1].shape == s.shape,
                         f"the bias has shape {self.blobs[-1].shape} but the scale has "
                         f"shape {s.shape}")
        top[0].reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.dims)
        self.kept = x.copy() if bottom[0] is top[0] else None
        y = x * self.operand(bottom).data.reshape(1, -1, 1)
        if self.param.scale_param.bias_term:
            y += self.blobs[-1].data.reshape(1, -1, 1)
        top[0].data.reshape(self.dims)[...] = y

    def backward_cpu(self, top, propagate_down, bottom):
        s = self.operand(bottom)
        dy = top[0].diff.reshape(self.dims)
        x = bottom[0].data.reshape(self.dims) if self.kept is None else self.kept
        if self.param.scale_param.bias_term:
            self.blobs[-1].diff += dy.sum(axis=(0, 2)).reshape(s.shape)
        ds = (dy * x).sum(axis=(0, 2)).reshape(s.shape)
        if len(bottom) == 1:
            s.diff += ds
        elif propagate_down[1]:
            s.diff[...] = ds
        if propagate_down[0]:
            bottom[0].diff.reshape(self.dims)[...] = dy * s.data.reshape(1, -1, 1)

    def forward_gpu(self, bottom, top):
        x, s = bottom[0], self.operand(bottom)
        if x is top[0]:
            self.kept_blob.reshape_like(x)
            self.kept_blob.copy_from(x)
        self.in_place = x is top[0]
        bias_term = self.param.scale_param.bias_term
        self.launch_1d("scale_forward", x.count, x.gpu_data, s.gpu_data,
                       self.blobs[-1].gpu_data if bias_term else 0, top[0].mutable_gpu_data,
                       np.int32(self.dims[1]), np.int32(self.dims[2]), np.int32(bias_term))

    def backward_gpu(self, top, propagate_down, bottom):
        s, dy = self.operand(bottom), top[0].gpu_diff
        outer, dim, inner = self.dims
        if self.param.scale_param.bias_term:
            blas.bias_backward(outer, dim, inner, dy, self.blobs[-1].mutable_gpu_diff)
        if len(bottom) == 1 or propagate_down[1]:
            x = self.kept_blob if self.in_place else bottom[0]
            self.launch_rows("scale_backward_scale", dim, np.int32(outer),
                             np.int32(dim), np.int32(inner), dy, x.gpu_data, s.mutable_gpu_diff,
                             np.int32(len(bottom) == 1))
        if propagate_down[0]:
            self.launch_1d("scale_backward", bottom[0].count, dy, s.gpu_data,
                           bottom[0].mutable_gpu_diff, np.int32(dim), np.int32(inner))
