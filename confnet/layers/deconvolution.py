"""Deconvolution: the transpose of Convolution (learned upsampling)."""

import numpy as np

from ..gpu import blas
from . import convolution
from .im2col import col2im, im2col
from .registry import register_layer


@register_layer("Deconvolution")
class Deconvolution(convolution.Convolution):
    """y[n, m, o] = b[m] + sum over (c, i, k) with o = i * s - pad + k * d of
                    W[c, m - g(m) M/G, k] * x[n, c, i],   c in group g(m)

    with i, o and k multi-indices over the spatial axes (input position, output position,
    kernel offset), s the stride, d the dilation, G the number of groups and g(m) = m // (M/G):
    every input cell scatters its value times the kernel into the output, and outputs that
    fall into the padding band are dropped. This is exactly the gradient of a Convolution
    with the same geometry with respect to its input (Caffe's BaseConvolutionLayer with the
    dimensions reversed).

    bottom: 1 or more blobs, all of shape (N, C, *spatial) (2-D: (N, C, H, W)).
    top: as many blobs, each (N, M, *out) with, per axis,
         out = stride (size - 1) + dilation (kernel - 1) + 1 - 2 pad.
    params: weight (C, M/G, *kernel), as Caffe lays it out; bias (M,) when bias_term.

    Computed per group as one matrix product over the whole batch, then col2im:
    col_g (M/G*K, N*P) = W_g^T @ x_g (C/G, N*P), y = col2im(col), with K = prod(kernel) and P
    = prod(spatial). Backward: dcol = im2col(dy); dW_g += x_g @ dcol_g^T, db += dy summed
    over n and o, dx_g = W_g @ dcol_g.

    On the device (1-D and 2-D, as Convolution; more spatial axes run the host path) the
    same products run over Convolution's kernels (``cuda/convolution.cu``) with the roles of
    its passes swapped. Large products (Convolution's rule, ``_device_path``) take the
    implicit-GEMM kernels, with no column buffer: forward is the convolution's implicit data
    gradient (a gather per y cell; with a stride above 1 it would multiply zeros, so strided
    layers take the column path for forward), dW its implicit weight gradient with x and dy
    swapped, and dx its implicit forward on dy. Otherwise, the column path: forward is
    Convolution's backward-data, col_g = W_g^T @ x_g batched over the images, then
    ``convolution_col2im`` gathers y; backward is its forward, dcol =
    ``convolution_im2col``(dy), dx_g = W_g @ dcol_g batched over the images, and dW_g += x_g @
    dcol_g^T with x transposed once to (C, n P) (``convolution_dy_to_rows``).

    Settings: those of Convolution (num_output, bias_term, kernel_size / stride / pad /
    dilation with the _h/_w forms, group, weight_filler incl. "bilinear", bias_filler; axis 1
    only), read and checked by Convolution's set-up.
    """

    def weight_shape(self):
        """Caffe's deconvolution layout: (C, num_output / group, *kernel)."""
        return (self.channels, self.num_output // self.group) + self.kernel

    def reshape(self, bottom, top):
        shape = self.check_bottoms(bottom)
        self.spatial = shape[2:]
        self.out = tuple(s * (size - 1) + d * (k - 1) + 1 - 2 * p for size, k, p, s, d in zip(
            self.spatial, self.kernel, self.pad, self.stride, self.dilation))
        self.require(all(o > 0 for o in self.out),
                     f"pad {self.pad} removes the whole output of an input {self.spatial} "
                     f"(kernel {self.kernel}, stride {self.stride}, dilation {self.dilation})")
        for blob in top:
            self.require(all(blob is not b for b in bottom), "cannot be computed in place")
            blob.reshape(shape[:1] + (self.num_output,) + self.out)

    # -- compute ---------------------------------------------------------------------------------
    def forward_cpu(self, bottom, top):
        weight = self._weight_groups(self.blobs[0].data).transpose(0, 2, 1)
        for x, y in zip(bottom, top):
            for images in self._chunks(x.shape[0]):
                col = np.matmul(weight, self._input_groups(x.data[images]))
                col2im(self._as_col(col), y.data[images], self.kernel, self.pad, self.stride,
                       self.dilation)
            if self.bias_term:
                bias = self.blobs[1].data.reshape((-1,) + (1,) * len(self.out))
                np.add(y.data, bias, out=y.data)

    def backward_cpu(self, top, propagate_down, bottom):
        weight = self.blobs[0]
        for y, x, down in zip(top, bottom, propagate_down):
            if self.bias_term:
                self.blobs[1].diff += y.diff.sum(axis=(0, *range(2, y.diff.ndim)))
            for images in self._chunks(x.shape[0]):
                xg = self._input_groups(x.data[images])
                dcol = im2col(y.diff[images], self.kernel, self.pad, self.stride, self.dilation)
                dcol = dcol.reshape(xg.shape[0], -1, xg.shape[2])
                weight.diff += np.matmul(xg, dcol.transpose(0, 2, 1)).reshape(weight.shape)
                if down:
                    dx = np.matmul(self._weight_groups(weight.data), dcol)
                    dx = dx.reshape((self.channels, -1) + self.spatial)
                    x.diff[images] = dx.swapaxes(0, 1)

    # -- layout helpers --------------------------------------------------------------------------
    def _weight_groups(self, w):
        """(C, M/G, *kernel) -> (G, C/G, M/G * K), a view."""
        return w.reshape(self.group, self.channels // self.group, -1)

    def _input_groups(self, x):
        """(n, C, *spatial) -> (G, C/G, n * P), a contiguous copy."""
        n = x.shape[0]
        grouped = np.ascontiguousarray(x.reshape(n, self.channels, -1).transpose(1, 0, 2))
        return grouped.reshape(self.group, self.channels // self.group, -1)

    def _as_col(self, col):
        """(G, M/G * K, n * P) -> (M, *kernel, n, *spatial), col2im's layout (a view)."""
        return col.reshape((self.num_output,) + self.kernel + (-1,) + self.spatial)

    def _chunks(self, n):
        """Slices of the batch whose column buffers (M K P values per image) fit in the
        budget Convolution uses (at least one image)."""
        per_image = (self.num_output * int(np.prod(self.kernel)) * int(np.prod(self.spatial))
                     * self.dtype.itemsize)
        step = max(1, convolution._COL_BUDGET // max(per_image, 1))
        return [slice(start, start + step) for start in range(0, n, step)]

    # -- device ----------------------------------------------------------------------------------
    def _device_sizes(self):
        """(M/G * K, C/G, P, Q): rows of a group's columns, its input channels, input and
        output positions per image."""
        mgk = self.num_output // self.group * int(np.prod(self.kernel))
        return (mgk, self.channels // self.group, int(np.prod(self.spatial)),
                int(np.prod(self.out)))

    def _device_path(self, n):
        """"implicit" or "im2col", by Convolution's rule applied to the forward product (M/G
        rows, n Q columns)."""
        implicit = self._implicit_pays(self.num_output // self.group,
                                       n * int(np.prod(self.out)), len(self._chunks(n)) > 1)
        return "implicit" if implicit else "im2col"

    def forward_gpu(self, bottom, top):
        c, m = self.channels, self.num_output
        for x, y in zip(bottom, top):
            n = x.shape[0]
            if (self._device_path(n) == "implicit"
                    and max(self.stride) <= convolution._IMPLICIT_DX_MAX_STRIDE):
                # A convolution's data gradient, M -> C channels from maps of size out to
                # spatial, with the roles of x and dy swapped.
                self._implicit_data_grad(x.gpu_data, n, self.out, self.spatial, m, c,
                                         self.blobs[0].gpu_data, y.mutable_gpu_data)
            else:
                self._column_forward(x, y)
            if self.bias_term:
                blas.bias_forward(n, m, int(np.prod(self.out)), self.blobs[1].gpu_data,
                                  y.mutable_gpu_data)

    def _column_forward(self, x, y):
        mgk, cg, p, q = self._device_sizes()
        c, m = self.channels, self.num_output
        weight = self.blobs[0].gpu_data
        geometry = self._geometry_2d(self.out, self.spatial)
        x_ptr, y_ptr = x.gpu_data, y.mutable_gpu_data
        for images in self._chunks(x.shape[0]):
            start, n = images.start, len(range(x.shape[0])[images])
            col = self._col_blob(0, (self.group * mgk, n * p)).mutable_gpu_data
            for group in range(self.group):
                # col_group[:, bP:(b+1)P] (mgk, P) = W_group^T @ x[b, group], batched on b.
                blas.gemm(True, False, mgk, p, cg, 1.0, weight + 4 * group * cg * mgk,
                          x_ptr + 4 * (start * c * p + group * cg * p), 0.0,
                          col + 4 * group * mgk * n * p,
                          ldc=n * p, batch=n, stride_b=c * p, stride_c=p)
            self._device_col2im(col, n, m, geometry, y_ptr + 4 * start * m * q)

    def backward_gpu(self, top, propagate_down, bottom):
        c, m, q = self.channels, self.num_output, int(np.prod(self.out))
        for y, x, down in zip(top, bottom, propagate_down):
            n, dy = x.shape[0], y.gpu_diff
            if self.bias_term:
                blas.bias_backward(n, m, q, dy, self.blobs[1].mutable_gpu_diff)
            if self._device_path(n) != "implicit":
                self._column_backward(y, x, down)
                continue
            # dW: a convolution's weight gradient with x and dy swapped; dx: its forward on dy.
            self._implicit_weight_grad(dy, x.gpu_data, n, self.out, self.spatial, m, c,
                                       self.blobs[0].mutable_gpu_diff)
            if down:
                self._implicit_forward(dy, n, self.out, self.spatial, m, c,
                                       self.blobs[0].gpu_data, 0, False, x.mutable_gpu_diff)

    def _column_backward(self, y, x, down):
        mgk, cg, p, q = self._device_sizes()
        c, m = self.channels, self.num_output
        weight, dy = self.blobs[0], y.gpu_diff
        geometry = self._geometry_2d(self.out, self.spatial)
        for images in self._chunks(x.shape[0]):
            start, n = images.start, len(range(x.shape[0])[images])
            self._dcol.reshape((self.group * mgk, n * p))
            dcol = self._dcol.mutable_gpu_data
            self.launch_1d("convolution_im2col", m * n * p, dy + 4 * start * m * q,
                           np.int32(n), np.int32(m), *geometry, dcol)
            self._dy_rows.reshape((c, n * p))   # here: x with the images side by side
            x_rows = self._dy_rows.mutable_gpu_data
            self.launch_1d("convolution_dy_to_rows", c * n * p, x.gpu_data + 4 * start * c * p,
                           np.int32(n), np.int32(c), np.int32(p), x_rows)
            dw = weight.mutable_gpu_diff
            for group in range(self.group):   # dW_group (cg, mgk) += x_group @ dcol^T
                blas.gemm(False, True, cg, mgk, n * p, 1.0, x_rows + 4 * group * cg * n * p,
                          dcol + 4 * group * mgk * n * p, 1.0, dw + 4 * group * cg * mgk)
            if not down:
                continue
            w, dx = weight.gpu_data, x.mutable_gpu_diff
            for group in range(self.group):
                # dx[b, group] (cg, P) = W_group @ dcol_group[:, bP:(b+1)P], batched on b.
                blas.gemm(False, False, cg, p, mgk, 1.0, w + 4 * group * cg * mgk,
                          dcol + 4 * group * mgk * n * p, 0.0,
                          dx + 4 * (start * c * p + group * cg * p),
                          ldb=n * p, ldc=p, batch=n, stride_b=p, stride_c=c * p)
