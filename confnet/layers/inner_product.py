"""InnerProduct: a fully connected layer."""

import numpy as np

from ..gpu import blas
from .base import Layer
from .registry import register_layer


@register_layer("InnerProduct")
class InnerProduct(Layer):
    """y = x W^T + b   (y = x W + b with transpose: true)

    The input is viewed as a matrix x of shape (M, K): M = the product of the dimensions before
    ``axis``, K = the product of those from ``axis`` on (axis 1: one row per image).

    bottom: 1 blob, any shape with K = count(axis, end) fixed after set up.
    top: shape[:axis] + (N,), N = num_output.
    params: weight (N, K), or (K, N) when transpose; bias (N,) when bias_term.
    backward: dx = dy W (dy W^T with transpose), dW += dy^T x (x^T dy with transpose),
              db += sum over rows of dy.

    On the device every product is one ``blas.gemm`` (row-major, as numpy); forward adds the
    bias per column in the product's epilogue (and max(y, 0) when the net fused the in-place ReLU
    that follows into this layer: ``fuse_relu``, see confnet/net.py); db is a deterministic
    column sum (``cuda/math.cu``).
    """

    params = ("inner_product_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "gemm.cu"

    def layer_setup(self, bottom, top):
        p = self.param.inner_product_param
        self.num_output = p.num_output
        self.require(self.num_output > 0, "num_output must be set to a positive number")
        self.axis = self._axis(bottom[0], p.axis)
        self.inputs = bottom[0].count_range(self.axis)
        self.transpose = p.transpose
        shape = ((self.inputs, self.num_output) if self.transpose
                 else (self.num_output, self.inputs))
        self.add_param_blob(shape, p.weight_filler)
        self.bias_term = p.bias_term
        if self.bias_term:
            self.add_param_blob((self.num_output,), p.bias_filler)
        self.fuse_relu = False   # set by the net: the device forward applies the next ReLU

    def _axis(self, blob, axis):
        n = blob.num_axes
        self.require(-n <= axis < max(n, 1),
                     f"axis {axis} is out of range for an input of shape {blob.shape}")
        return axis % n if n else 0

    def reshape(self, bottom, top):
        x = bottom[0]
        self.require(self._axis(x, self.param.inner_product_param.axis) == self.axis
                     and x.count_range(self.axis) == self.inputs,
                     f"input shape {x.shape} flattens to {x.count_range(self.axis)} inputs from "
                     f"axis {self.axis}; the weights were made for {self.inputs}")
        top[0].reshape(x.shape[:self.axis] + (self.num_output,))

    def _weight(self, w):
        """The weight as a (K, N) matrix (a view), so that y = x @ _weight(W)."""
        return w if self.transpose else w.T

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(-1, self.inputs)
        y = top[0].data.reshape(-1, self.num_output)
        np.matmul(x, self._weight(self.blobs[0].data), out=y)
        if self.bias_term:
            y += self.blobs[1].data

    def backward_cpu(self, top, propagate_down, bottom):
        x = bottom[0].data.reshape(-1, self.inputs)
        dy = top[0].diff.reshape(-1, self.num_output)
        weight = self.blobs[0]
        weight.diff += (x.T @ dy) if self.transpose else (dy.T @ x)
        if self.bias_term:
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            np.matmul(dy, self._weight(weight.data).T, out=bottom[0].diff.reshape(dy.shape[0], -1))

    def forward_gpu(self, bottom, top):
        rows, k, n = bottom[0].count // self.inputs, self.inputs, self.num_output
        # y (rows, N) = x (rows, K) @ W^T + b, W stored (N, K); with transpose W is stored (K, N).
        blas.gemm(False, not self.transpose, rows, n, k, 1.0, bottom[0].gpu_data,
                  self.blobs[0].gpu_data, 0.0, top[0].mutable_gpu_data,
                  bias=self.blobs[1].gpu_data if self.bias_term else None, bias_per="col",
                  relu=self.fuse_relu)

    def backward_gpu(self, top, propagate_down, bottom):
        rows, k, n = bottom[0].count // self.inputs, self.inputs, self.num_output
        dy, x, weight = top[0].gpu_diff, bottom[0].gpu_data, self.blobs[0]
        if self.transpose:   # dW (K, N) += x^T dy
            blas.gemm(True, False, k, n, rows, 1.0, x, dy, 1.0, weight.mutable_gpu_diff)
        else:                # dW (N, K) += dy^T x
            blas.gemm(True, False, n, k, rows, 1.0, dy, x, 1.0, weight.mutable_gpu_diff)
        if self.bias_term:
            blas.bias_backward(rows, n, 1, dy, self.blobs[1].mutable_gpu_diff)
        if propagate_down[0]:   # dx (rows, K) = dy (rows, N) @ W (N, K), or @ W^T with transpose
            blas.gemm(False, self.transpose, rows, k, n, 1.0, dy, weight.gpu_data, 0.0,
                      bottom[0].mutable_gpu_diff)
