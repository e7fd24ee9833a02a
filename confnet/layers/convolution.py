"""Convolution: a bank of learned filters slid over the spatial axes of the input."""

import numpy as np

from ..gpu import blas
from ..host_blas import matmul_batches, matmul_reduce
from ..threads import elementwise, split
from .base import TRAIN, Layer
from .im2col import (
    SCRATCH,
    col2im_batch_last,
    copy_split,
    from_batch_last,
    im2col,
    im2col_batch_last,
    interior,
    output_shape,
    padded_batch_last,
    row_windows_batch_last,
    to_batch_last,
    windows_batch_last,
)
from .registry import register_layer

# The host columns are batch-last (C K, P N) when an image has fewer output positions P than
# this and the batch has at least _BATCH_LAST_MIN_IMAGES images: im2col then copies runs of
# out_last * N contiguous values (at least 16 times the batch-first rows of out_last), and the
# transposes of y and dy to and from (M, P, N) are cheap. On larger maps (LeNet's and CIFAR's
# conv1: few input channels, many positions) those transposes cost more than the products, so
# the columns are batch-first (C K, N P) and forward writes y (N, M, P) straight from one
# product per image. (The two layouts sum dW's terms in another order: equal to float32
# rounding.)
_BATCH_LAST_MAX_POSITIONS = 512
_BATCH_LAST_MIN_IMAGES = 16

# Row-window products stack the kernel rows into one product when the padded rows are at most
# this many times the output rows (CIFAR-10-quick's conv2: 20 for 16; measured there 10.6 ms
# for the stacked product against 12.6 ms for five products and their sum).
_STACK_ROWS = 1.3

# A weight gradient (per group) of at most this many values is computed by confnet's workers,
# each summing part of the reduction (host_blas.matmul_reduce): BLAS shares such a small
# output badly over its threads (CIFAR-10-quick's conv1, 75 x 32 from 102400 terms each).
_REDUCE_MAX_OUTPUT = 4096

# Above this many bytes of im2col buffer, a batch is convolved a chunk of images at a time (and
# the buffer is rebuilt in backward instead of kept from forward), so big nets fit in memory.
_COL_BUDGET = 256 << 20

# The implicit-GEMM kernels (cuda/convolution.cu): 64x64 output tiles, 256 threads a block,
# 16 steps of depth a stage.
_IG_TILE, _IG_THREADS, _IG_STEP = 64, 256, 16
# The device takes the implicit path when the output product has at least this many tiles
# (Convolution._device_path).
_IMPLICIT_MIN_TILES = blas.GEMM_SMS // 4
# The implicit data gradient multiplies stride_h stride_w times more terms than it needs (the
# inexact ones are zeros): strided layers compute dx through the column gradient instead.
_IMPLICIT_DX_MAX_STRIDE = 1
# The implicit weight gradient splits its reduction over the batch until about this many
# blocks run, each summing at least _DW_MIN_SLICE columns (images x positions).
_DW_BLOCKS = 256
_DW_MIN_SLICE = 4096


@register_layer("Convolution")
class Convolution(Layer):
    """y[n, m, o] = b[m] + sum_{c, k} W[m, c, k] * xpad[n, g(m) C/G + c, o * s + k * d]

    with o and k multi-indices over the spatial axes (output position and kernel offset), xpad
    the input zero-padded by ``pad`` on both sides, s the stride, d the dilation, G the number
    of groups and g(m) = m // (M/G) the group of output channel m: each group of M/G outputs
    sees only its own C/G input channels.

    bottom: 1 or more blobs, all of shape (N, C, *spatial) (2-D: (N, C, H, W)).
    top: as many blobs, each (N, M, *out) with, per axis,
         out = (size + 2 pad - (dilation (kernel - 1) + 1)) // stride + 1.
    params: weight (M, C/G, *kernel); bias (M,) when bias_term. Every bottom uses the same ones.

    Computed as im2col then, per group, one matrix product over the whole batch:
    Y_g (M/G, P*N) = W_g (M/G, C/G*K) @ col_g (C/G*K, P*N), with K = prod(kernel) and
    P = prod(out). On the host, for small maps and batches of 16 images or more, the columns
    are batch-last, ordered (o, n): im2col then copies runs of out_last * N contiguous values,
    and Y goes back to (N, M, *out) one channel at a time; otherwise they are ordered (n, o),
    one product per image. Backward: dW_g += dY_g @ col_g^T, db += dY summed over n and o, and
    dx = col2im(W_g^T @ dY_g), with dY_g ordered (o, n) too, so that col2im adds contiguous
    rows. Column and scratch buffers are kept between iterations, so a training step allocates
    no large array; the columns forward keeps for backward are layer-owned blobs, on the side
    (host or device) the layer runs on.

    On the device (1-D and 2-D; with more spatial axes the layer runs its host path) the same
    products take one of three paths (``_device_path``, kernels in ``cuda/convolution.cu``):

    - implicit GEMM (large products): forward, dW and dx (stride 1) are tiled products whose
      column tiles are gathered from x (dy) in shared memory, so a training step allocates no
      column buffer; bias and the fused ReLU are applied in the forward's epilogue. dW splits its
      reduction over the batch into slices added in a fixed order. Strided layers compute dx
      through the column gradient (below), which the gather would fill with zeros.
    - 1x1 (kernel 1, stride 1, no pad): y_g = W_g @ x_g and dx_g = W_g^T @ dY_g are
      ``blas.gemm`` calls batched over the images, on x and dy as they lie; dW implicit.
    - im2col: ``blas.gemm`` over columns ordered (n, o): forward, per group, one product batched
      over the images, Y[b]_g = W_g @ col_g[:, bP:(b+1)P], written straight into y; backward
      transposes dY to (M, n P) once, then dW_g += dY_g @ col_g^T and dcol_g = W_g^T @ dY_g are
      one product each, and col2im gathers dx without atomics.

    The GEMM paths add the bias (and apply a fused ReLU, ``fuse_relu``, set by the net) in
    ``blas.gemm``'s epilogue.

    Settings: num_output, bias_term, kernel_size / stride / pad / dilation (one value for every
    axis or one per axis; kernel_h/_w, stride_h/_w, pad_h/_w in 2-D), group, weight_filler,
    bias_filler. ``axis`` must be the channel axis 1; engine and force_nd_im2col do not change
    the result and are accepted.
    """

    params = ("convolution_param",)
    min_bottom = min_top = 1
    has_gpu = True
    kernels = "convolution.cu"

    def layer_setup(self, bottom, top):
        p = self.param.convolution_param
        self.require(len(bottom) == len(top),
                     f"needs as many tops as bottoms, got {len(bottom)} bottom(s) and "
                     f"{len(top)} top(s)")
        shape = bottom[0].shape
        self.require(len(shape) >= 3, f"needs an input of shape (N, C, spatial...), got {shape}")
        self.require(p.axis in (1, 1 - len(shape)),
                     f"axis: {p.axis} is not supported; confnet convolves inputs laid out as "
                     "(N, C, spatial...) with the channels on axis 1")
        self.read_geometry(p, len(shape) - 2)
        # The device kernels are 2-D (1-D runs as height 1); more spatial axes use the host path.
        self.has_gpu = type(self).has_gpu and len(self.kernel) <= 2
        self.num_output, self.group, self.channels = p.num_output, p.group, shape[1]
        self.require(self.num_output > 0, "num_output must be set to a positive number")
        self.require(self.group > 0, "group must be positive")
        self.require(self.channels % self.group == 0 and self.num_output % self.group == 0,
                     f"group {self.group} must divide both the input channels "
                     f"({self.channels}) and num_output ({self.num_output})")
        self.add_param_blob(self.weight_shape(), p.weight_filler)
        # Layer-owned buffers: the columns forward keeps for backward (one blob per bottom; in
        # a device run blob 0 also serves every chunk that is not kept), and, on the device, the
        # transposed output gradient and the column gradient of backward.
        self._col_blobs = []
        self._dy_rows, self._dcol = self.new_blob(), self.new_blob()
        self._dw_partial = self.new_blob()   # the implicit weight gradient's partial sums
        # Set by the net (confnet/net.py, fuse_relu_layers) when the in-place ReLU that follows
        # is fused: the device forward then applies max(y, 0) in its epilogue.
        self.fuse_relu = False
        self.bias_term = p.bias_term
        if self.bias_term:
            self.add_param_blob((self.num_output,), p.bias_filler)

    def weight_shape(self):
        """(num_output, C / group, *kernel)."""
        return (self.num_output, self.channels // self.group) + self.kernel

    def read_geometry(self, p, n):
        """kernel, stride, pad and dilation of a ConvolutionParameter, one value per each of
        the ``n`` spatial axes."""
        self.kernel = self._per_axis(p, "kernel_size", "kernel", None, n)
        self.stride = self._per_axis(p, "stride", "stride", 1, n)
        self.pad = self._per_axis(p, "pad", "pad", 0, n)
        self.dilation = self._per_axis(p, "dilation", None, 1, n)
        for name in ("kernel", "stride", "dilation"):
            self.require(all(v > 0 for v in getattr(self, name)),
                         f"{name} must be positive, got {getattr(self, name)}")

    def _per_axis(self, p, field, hw, default, n):
        """One value per spatial axis from a repeated field (1 or n values), or from its 2-D
        ``<hw>_h``/``<hw>_w`` pair."""
        values = list(getattr(p, field))
        if hw and (p.HasField(f"{hw}_h") or p.HasField(f"{hw}_w")):
            self.require(n == 2, f"{hw}_h/{hw}_w are for 2-D inputs only; use {field} for "
                                 f"{n} spatial axes")
            self.require(not values, f"set either {field} or {hw}_h/{hw}_w, not both")
            self.require(hw == "pad" or (p.HasField(f"{hw}_h") and p.HasField(f"{hw}_w")),
                         f"{hw}_h and {hw}_w must be set together")
            return (getattr(p, f"{hw}_h"), getattr(p, f"{hw}_w"))
        if not values:
            self.require(default is not None, f"{field} must be set (or {hw}_h and {hw}_w)")
            values = [default]
        self.require(len(values) in (1, n),
                     f"{field} needs 1 or {n} values (one per spatial axis), got {len(values)}")
        return tuple(values * n if len(values) == 1 else values)

    def check_bottoms(self, bottom):
        """All bottoms of one shape, with the spatial axes and channels the weights expect."""
        shape = bottom[0].shape
        for blob in bottom[1:]:
            self.require(blob.shape == shape,
                         f"all bottoms need the same shape, got {shape} and {blob.shape}")
        self.require(len(shape) == 2 + len(self.kernel),
                     f"was set up for {len(self.kernel)} spatial axes, got input shape {shape}")
        self.require(shape[1] == self.channels,
                     f"input has {shape[1]} channels, the weights were made for {self.channels}")
        return shape

    def reshape(self, bottom, top):
        shape = self.check_bottoms(bottom)
        self.out = output_shape(shape[2:], self.kernel, self.pad, self.stride, self.dilation)
        self.require(all(o > 0 for o in self.out),
                     f"kernel {self.kernel} (dilation {self.dilation}) is larger than the "
                     f"padded input {shape[2:]} (pad {self.pad})")
        for blob in top:
            blob.reshape(shape[:1] + (self.num_output,) + self.out)
        self._in_spatial = shape[2:]
        self._cols = [None] * len(bottom)
        self._batch_last = (int(np.prod(self.out)) < _BATCH_LAST_MAX_POSITIONS
                            and shape[0] >= _BATCH_LAST_MIN_IMAGES)
        # Row windows: batch-last 2-D columns with stride 1 along the rows keep only the
        # windows along the width; kernel row a reads a slice of their rows.
        self._rows = (self._batch_last and len(self.kernel) == 2 and self.stride[0] == 1
                      and self.kernel[0] > 1)
        self._device_cols = [False] * len(bottom)   # whether _col_blobs[i] holds forward's columns

    # -- compute ---------------------------------------------------------------------------------
    def forward_cpu(self, bottom, top):
        for i, (x, y) in enumerate(zip(bottom, top)):
            chunks = self._chunks(x.shape[0])
            # One chunk in training: keep the buffer for backward instead of rebuilding it.
            keep = len(chunks) == 1 and self.phase == TRAIN
            for images in chunks:
                x_chunk = x.data[images]
                shape = self._host_col_shape(x_chunk.shape[0])
                out = (self._col_blob(i, shape).data if keep
                       else SCRATCH.get("col", shape, x_chunk.dtype))
                col = self._im2col(x_chunk, out)
                self._cols[i] = col if keep else None
                self._forward_chunk(col, y.data[images])

    def _forward_chunk(self, col, y):
        """y (n, M, *out) = W_g @ col_g per group, + b. Batch-last: one product over the chunk
        (or one per kernel row, over row windows), whose (M, P n) result goes back to the
        batch-first y one channel at a time; else one product per image, written straight
        into y."""
        n, m = y.shape[0], self.num_output
        weight = self._weight_groups(self.blobs[0].data)
        bias = self.blobs[1].data if self.bias_term else None
        if self._rows:
            out = SCRATCH.get("conv_y", (self.group, m // self.group, n * int(np.prod(self.out))),
                              y.dtype)
            self._row_products(self._kernel_rows(), col, self.out[0], out)
            from_batch_last(out.reshape((m,) + self.out + (n,)), y, add=bias)
        elif self._batch_last:
            out = SCRATCH.get("conv_y", col.shape[:1] + (m // self.group, col.shape[2]),
                              y.dtype)
            np.matmul(weight, col, out=out)
            from_batch_last(out.reshape((m,) + self.out + (n,)), y, add=bias)
        else:
            matmul_batches(weight, col.reshape(col.shape[:2] + (n, -1)).transpose(2, 0, 1, 3),
                           y.reshape(n, self.group, m // self.group, -1))
            if bias is not None:
                bias = bias.reshape((m,) + (1,) * len(self.out))
                split(n, lambda a, b: np.add(y[a:b], bias, out=y[a:b]), y.nbytes)

    def backward_cpu(self, top, propagate_down, bottom):
        weight = self.blobs[0]
        for i, (y, x) in enumerate(zip(top, bottom)):
            for images in self._chunks(x.shape[0]):
                col = self._cols[i]
                if col is None:
                    x_chunk = x.data[images]
                    col = self._im2col(x_chunk, SCRATCH.get(
                        "col", self._host_col_shape(x_chunk.shape[0]), x_chunk.dtype))
                dy = self._output_groups(y.diff[images])
                if self.bias_term:
                    # A product with ones: BLAS sums the long rows ~5x faster than np.sum.
                    ones = SCRATCH.get("conv_ones", dy.shape[2:], dy.dtype)
                    ones.fill(1)
                    self.blobs[1].diff += np.matmul(dy, ones).reshape(-1)
                if self._rows:   # kernel row a: dW[..., a, :] from rows [a d, a d + Ho)
                    g, mg, kh = self.group, self.num_output // self.group, self.kernel[0]
                    rows = weight.diff.reshape(g, mg, -1, kh, self.kernel[1])
                    for a, window in enumerate(self._kernel_row_windows(col, self.out[0])):
                        rows[:, :, :, a] += self._weight_product(window, dy).reshape(
                            rows[:, :, :, a].shape)
                else:
                    weight.diff += self._weight_product(col, dy).reshape(weight.shape)
                if propagate_down[i]:
                    self._backward_data(self._batch_last_groups(dy), x.diff[images])

    def _weight_product(self, col, dy):
        """dY_g @ col_g^T (G, M/G, rows of col) for col (G, rows, L) and dy (G, M/G, L), as
        the transpose of col_g @ dY_g^T, which BLAS runs faster; a small one (at most
        _REDUCE_MAX_OUTPUT values a group) with the reduction shared out over the workers."""
        dw = SCRATCH.get("conv_dw", col.shape[:2] + dy.shape[1:2], dy.dtype)
        product = matmul_reduce if dw[0].size <= _REDUCE_MAX_OUTPUT else np.matmul
        product(col, dy.transpose(0, 2, 1), out=dw)
        return dw.transpose(0, 2, 1)

    def _backward_data(self, dy, dx):
        """dx from dy grouped as (G, M/G, P n), batch-last. Either dx = col2im(W^T dy), whose
        col2im adds kernel-many shifted copies of C K P n columns; or, with stride 1, as the
        convolution of dy with the flipped, transposed weights:
        dx[c, h] = sum_{m, k} W[m, c, K-1-k] dypad[m, h + k d], dy padded by
        q = d (K-1) - pad, which costs an im2col of M K H n values and a product of 2 C M K H n
        flops instead. The second is taken where it is not larger: same-size output (H = P,
        as in CIFAR-10-quick's conv2 and conv3) and M <= C, or any M with row windows, whose
        copy of dy (M k_w rows) is smaller than the first way's column gradient (C K) when
        M < k_h C. A valid convolution (LeNet's) would pay H / P times the flops."""
        n, ndim = dx.shape[0], len(self.kernel)
        extent = tuple(d * (k - 1) for k, d in zip(self.kernel, self.dilation))
        dx_t = SCRATCH.get("conv_dx_t", (self.channels,) + dx.shape[2:] + (n,), dx.dtype)
        if (all(s == 1 for s in self.stride) and all(p <= e for p, e in zip(self.pad, extent))
                and self.out == dx.shape[2:]
                and (self.num_output <= self.channels
                     or self._rows and self.num_output < self.kernel[0] * self.channels)):
            pad = tuple(e - p for e, p in zip(extent, self.pad))
            padded, inside = padded_batch_last((self.num_output,) + self.out + (n,), pad,
                                               dy.dtype, SCRATCH)
            np.copyto(inside, dy.reshape(inside.shape))
            out = dx_t.reshape(self.group, self.channels // self.group, -1)
            if self._rows:
                rows = SCRATCH.get("conv_dcol", (self.num_output, self.kernel[1],
                                                 padded.shape[1]) + dx.shape[3:] + (n,),
                                   dy.dtype)
                row_windows_batch_last(padded, 1, self.dilation[1], rows)
                self._row_products(self._kernel_rows(flipped=True),
                                   rows.reshape(self.group, -1, *rows.shape[2:]),
                                   dx.shape[2], out)
            else:
                col = SCRATCH.get("conv_dcol", (self.num_output,) + self.kernel + dx.shape[2:]
                                  + (n,), dy.dtype)
                windows_batch_last(padded, self.kernel, (1,) * ndim, self.dilation, col)
                np.matmul(self._flipped_weight_groups(), col.reshape(self.group, -1, out.shape[2]),
                          out=out)
        else:
            weight = self._weight_groups(self.blobs[0].data).transpose(0, 2, 1)
            dcol = SCRATCH.get("conv_dcol", weight.shape[:2] + dy.shape[2:], dy.dtype)
            np.matmul(weight, dy, out=dcol)
            padded = tuple(size + 2 * p for size, p in zip(dx.shape[2:], self.pad))
            acc = SCRATCH.get("conv_acc", (self.channels,) + padded + (n,), dx.dtype)
            col2im_batch_last(dcol.reshape((self.channels,) + self.kernel + self.out + (n,)),
                              acc, self.stride, self.dilation)
            dx_t = acc[(slice(None),) + interior(dx.shape[2:], self.pad)]
        from_batch_last(dx_t, dx)

    def _flipped_weight_groups(self):
        """(G, C/G, M/G * K): W[m, c, K-1-k] at [g, c, (m, k)], a contiguous copy."""
        g, ndim = self.group, len(self.kernel)
        w = self.blobs[0].data.reshape((g, self.num_output // g) + self.blobs[0].shape[1:])
        flipped = w[(slice(None),) * 3 + (slice(None, None, -1),) * ndim]
        return np.ascontiguousarray(flipped.swapaxes(1, 2)).reshape(
            g, self.channels // g, -1)

    # -- row windows -----------------------------------------------------------------------------
    def _kernel_rows(self, flipped=False):
        """The weights as one product operand per kernel row a: (kh, G, M/G, C/G kw), row a
        holding W[m, c, a, b] at [a, g, m, (c, b)]. ``flipped``: the operands of backward's
        convolution of dy with the flipped, transposed weights, (kh, G, C/G, M/G kw) holding
        W[m, c, kh-1-a, kw-1-b] at [a, g, c, (m, b)]. Contiguous copies (a few KB)."""
        g, (kh, kw) = self.group, self.kernel
        w = self.blobs[0].data.reshape(g, self.num_output // g, -1, kh, kw)
        if flipped:
            w = w[:, :, :, ::-1, ::-1].transpose(3, 0, 2, 1, 4)
        else:
            w = w.transpose(3, 0, 1, 2, 4)
        return np.ascontiguousarray(w).reshape(kh, g, w.shape[2], -1)

    def _kernel_row_windows(self, rows, height):
        """For every kernel row a, the (G, K, height * rest) view of the row windows ``rows``
        (G, K, padded rows, rest) that it reads: rows [a d, a d + height), a strided matrix
        BLAS takes without a copy."""
        d = self.dilation[0]
        return [rows[:, :, a * d:a * d + height].reshape(rows.shape[:2] + (-1,))
                for a in range(self.kernel[0])]

    def _row_products(self, weights, rows, height, out):
        """out (G, R, height * rest) = sum_a weights[a] (G, R, K) @ window a of ``rows``: a
        convolution of stride 1 along the rows, from k_w-wide row windows (see
        row_windows_batch_last).

        When the padded rows are few more than ``height`` (at most _STACK_ROWS times), one
        product of the kernel rows' weights stacked, (G, k_h R, K) @ (G, K, all rows * rest),
        runs faster than k_h products of R rows (BLAS works better with more rows), though it
        also computes the rows no kernel row needs; out then sums row a's slice of its
        result at offset a d. Otherwise the first product writes out and the others add a
        scratch product to it."""
        g, r = out.shape[:2]
        kh, d, padded = len(weights), self.dilation[0], rows.shape[2]
        if padded <= _STACK_ROWS * height:
            stacked = SCRATCH.get("conv_row_stack", (g, kh * r, rows[0, 0].size), out.dtype)
            np.matmul(weights.transpose(1, 0, 2, 3).reshape(g, kh * r, -1),
                      rows.reshape(g, rows.shape[1], -1), out=stacked)
            stacked = stacked.reshape(g, kh, r, padded, -1)
            target = out.reshape(g, r, height, -1)

            def rows(lo, hi):   # each worker sums its own rows of out, all kernel rows at once
                np.copyto(target[:, lo:hi], stacked[:, 0, lo:hi, :height])
                for a in range(1, kh):
                    target[:, lo:hi] += stacked[:, a, lo:hi, a * d:a * d + height]
            split(r, rows, stacked.nbytes)
            return
        part = None
        for a, window in enumerate(self._kernel_row_windows(rows, height)):
            if a == 0:
                np.matmul(weights[0], window, out=out)
                continue
            part = SCRATCH.get("conv_row_part", out.shape, out.dtype) if part is None else part
            np.matmul(weights[a], window, out=part)
            elementwise(lambda total, term: np.add(total, term, out=total), out, part)

    # -- layout helpers --------------------------------------------------------------------------
    def _col_shape(self, n):
        """The device column buffer of n images: (C, *kernel, n, *out), i.e. (C K, n P)."""
        return (self.channels,) + self.kernel + (n,) + self.out

    def _host_col_shape(self, n):
        """The host column buffer of n images: row windows (C, kw, H + 2 pad_h, Wo, n);
        batch-last (C, *kernel, *out, n); else as on the device."""
        if self._rows:
            return (self.channels, self.kernel[1], self._in_spatial[0] + 2 * self.pad[0],
                    self.out[1], n)
        if self._batch_last:
            return (self.channels,) + self.kernel + self.out + (n,)
        return self._col_shape(n)

    def _col_blob(self, i, shape):
        """Layer-owned column blob ``i``, reshaped to ``shape`` (its storage is kept)."""
        while len(self._col_blobs) <= i:
            self._col_blobs.append(self.new_blob())
        self._col_blobs[i].reshape(shape)
        return self._col_blobs[i]

    def _im2col(self, x, col):
        """(n, C, *spatial) -> (G, C/G * K, P n) or (G, C/G * K, n P), written into ``col``
        (``_host_col_shape(n)``); row windows: (G, C/G kw, H + 2 pad_h, Wo n)."""
        if self._rows:
            padded, inside = padded_batch_last(x.shape[1:2] + x.shape[2:] + x.shape[:1],
                                               self.pad, x.dtype, SCRATCH)
            to_batch_last(x, inside)
            row_windows_batch_last(padded, self.stride[1], self.dilation[1], col)
            return col.reshape(self.group, -1, col.shape[2], col.shape[3] * col.shape[4])
        if self._batch_last:
            im2col_batch_last(x, self.kernel, self.pad, self.stride, self.dilation, col, SCRATCH)
        else:
            im2col(x, self.kernel, self.pad, self.stride, self.dilation, out=col,
                   scratch=SCRATCH)
        return col.reshape(self.group, -1, x.shape[0] * int(np.prod(self.out)))

    def _weight_groups(self, w):
        """(M, C/G, *kernel) -> (G, M/G, C/G * K), a view."""
        return w.reshape(self.group, self.num_output // self.group, -1)

    def _output_groups(self, dy):
        """(n, M, *out) -> (G, M/G, P n) batch-last or (G, M/G, n P), in the columns' order: a
        contiguous copy (in a scratch buffer)."""
        n = dy.shape[0]
        if self._batch_last:
            grouped = SCRATCH.get("conv_dy", (self.num_output,) + self.out + (n,), dy.dtype)
            to_batch_last(dy, grouped)
        else:
            grouped = SCRATCH.get("conv_dy", (self.num_output, n, int(np.prod(self.out))),
                                  dy.dtype)
            copy_split(grouped, dy.reshape(n, self.num_output, -1).transpose(1, 0, 2))
        return grouped.reshape(self.group, self.num_output // self.group, -1)

    def _batch_last_groups(self, dy):
        """dy from ``_output_groups`` ordered (P, n) (a copy when it is (n, P))."""
        if self._batch_last:
            return dy
        n = dy.shape[2] // int(np.prod(self.out))
        moved = SCRATCH.get("conv_dy_t", (self.num_output, int(np.prod(self.out)), n), dy.dtype)
        copy_split(moved, dy.reshape(self.num_output, n, -1).transpose(0, 2, 1))
        return moved.reshape(dy.shape)

    def _chunks(self, n):
        """Slices of the batch whose im2col buffers fit in _COL_BUDGET (at least one image)."""
        per_image = (self.channels * int(np.prod(self.kernel)) * int(np.prod(self.out))
                     * self.dtype.itemsize)
        step = max(1, _COL_BUDGET // max(per_image, 1))
        return [slice(start, start + step) for start in range(0, n, step)]

    # -- device ----------------------------------------------------------------------------------
    def _geometry_2d(self, spatial, out=None):
        """(height, width, kernel_h, kernel_w, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w,
        out_h, out_w) as int32 kernel arguments; a 1-D convolution is a 2-D one of height 1.
        ``out`` defaults to self.out (Deconvolution passes its input's size: its columns are
        the windows of its output)."""
        lead = (1,) * (2 - len(spatial))
        zero = (0,) * (2 - len(spatial))
        out = self.out if out is None else tuple(out)
        values = (lead + tuple(spatial) + lead + self.kernel + zero + self.pad + lead + self.stride
                  + lead + self.dilation + lead + out)
        return tuple(np.int32(v) for v in values)

    def _device_im2col(self, x_ptr, n, spatial, col_ptr):
        geometry = self._geometry_2d(spatial)
        self.launch_1d("convolution_im2col", self.channels * n * int(np.prod(self.out)), x_ptr,
                       np.int32(n), np.int32(self.channels), *geometry, col_ptr)

    def _is_1x1(self):
        """Kernel 1, stride 1, no padding: the columns are x itself."""
        return (all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride)
                and not any(self.pad))

    def _device_path(self, n):
        """How the device convolves a batch of ``n`` images (forward and backward agree):

        - "1x1": plain GEMMs on x and dy as they lie (no columns, no gather);
        - "implicit": the implicit-GEMM kernels, which gather the column tiles from x (dy) in
          shared memory instead of writing and reading a C K n P column buffer;
        - "im2col": columns, then ``blas.gemm``.

        The implicit kernels have one tile shape, 64x64, so they are taken when the output
        product has at least _IMPLICIT_MIN_TILES of those tiles (a quarter of the SMs' worth,
        the bound below which ``blas.choose_gemm`` turns to 16x16 tiles to spread a small
        product over more SMs). Smaller products keep the column path: their buffer is small,
        and the GEMM's small tiles keep more SMs busy. With TF32 allowed (``blas.set_tf32``, on
        by default in a device solver) the column path's products may run on tensor cores,
        which the float32 implicit kernels do not use, so it is kept unless the batch's column
        buffer exceeds _COL_BUDGET (where the column path would run chunk by chunk and rebuild
        the columns in backward). The column buffer avoided is C K n P floats, written once and
        read once per product (and kept from forward to backward in training); the rule has not
        been timed on a GPU yet."""
        if self._is_1x1():
            return "1x1"
        implicit = self._implicit_pays(self.num_output // self.group, n * int(np.prod(self.out)),
                                       len(self._chunks(n)) > 1)
        return "implicit" if implicit else "im2col"

    def _implicit_pays(self, rows, cols, over_budget):
        """Whether a rows x cols product per group takes the implicit kernels (see
        ``_device_path``); ``over_budget``: the column buffer would exceed _COL_BUDGET."""
        tiles = _cdiv(rows, _IG_TILE) * _cdiv(cols, _IG_TILE) * self.group
        return tiles >= _IMPLICIT_MIN_TILES and (over_budget or not blas.tf32_enabled())

    def _bias_ptr(self, group=0):
        """The device bias of output channels group * M/G on (for a GEMM's epilogue), or None."""
        if not self.bias_term:
            return None
        return self.blobs[1].gpu_data + 4 * group * (self.num_output // self.group)

    def _device_col2im(self, col_ptr, n, channels, geometry, out_ptr):
        """out (n, channels, height, width) = every column entry summed at the cell it was
        read from; ``geometry`` (``_geometry_2d``) starts with that height and width."""
        self.launch_1d("convolution_col2im", n * channels * int(geometry[0]) * int(geometry[1]),
                       col_ptr, np.int32(n), np.int32(channels), *geometry, out_ptr)

    def forward_gpu(self, bottom, top):
        spatial = bottom[0].shape[2:]
        for i, (x, y) in enumerate(zip(bottom, top)):
            n = x.shape[0]
            path = self._device_path(n)
            self._device_cols[i] = False
            # Every path adds the bias (and applies the fused ReLU) in its product's epilogue.
            if path == "implicit":
                self._implicit_forward(x.gpu_data, n, spatial, self.out, self.channels,
                                       self.num_output, self.blobs[0].gpu_data,
                                       self._bias_ptr() or 0, self.fuse_relu,
                                       y.mutable_gpu_data)
            elif path == "1x1":
                self._forward_1x1(x.gpu_data, n, y.mutable_gpu_data)
            else:
                self._im2col_forward(i, x, y)

    def _forward_1x1(self, x_ptr, n, y_ptr):
        """y[b, group] (mg, P) = W_group (mg, cg) @ x[b, group] (cg, P) (+ b, ReLU), batched on
        b."""
        m, c, g, p = self.num_output, self.channels, self.group, int(np.prod(self.out))
        mg, cg, weight = m // g, c // g, self.blobs[0].gpu_data
        for group in range(g):
            blas.gemm(False, False, mg, p, cg, 1.0, weight + 4 * group * mg * cg,
                      x_ptr + 4 * group * cg * p, 0.0, y_ptr + 4 * group * mg * p,
                      batch=n, stride_b=c * p, stride_c=m * p, bias=self._bias_ptr(group),
                      relu=self.fuse_relu)

    def _im2col_forward(self, i, x, y):
        m, g = self.num_output, self.group
        mg, ckg = m // g, self.channels // g * int(np.prod(self.kernel))
        p, spatial = int(np.prod(self.out)), x.shape[2:]
        image_in, image_out = self.channels * int(np.prod(spatial)), m * p
        weight = self.blobs[0].gpu_data
        chunks = self._chunks(x.shape[0])
        keep = len(chunks) == 1 and self.phase == TRAIN
        x_ptr, y_ptr = x.gpu_data, y.mutable_gpu_data
        for images in chunks:
            start, n = images.start, len(range(x.shape[0])[images])
            col = self._col_blob(i if keep else 0, self._col_shape(n)).mutable_gpu_data
            self._device_im2col(x_ptr + 4 * start * image_in, n, spatial, col)
            for group in range(g):
                # y[b, group] (mg, P) = W_group (mg, ckg) @ columns of image b, batched on b.
                blas.gemm(False, False, mg, p, ckg, 1.0, weight + 4 * group * mg * ckg,
                          col + 4 * group * ckg * n * p, 0.0,
                          y_ptr + 4 * (start * image_out + group * mg * p),
                          ldb=n * p, ldc=p, batch=n, stride_b=p, stride_c=image_out,
                          bias=self._bias_ptr(group), relu=self.fuse_relu)
        self._device_cols[i] = keep

    def backward_gpu(self, top, propagate_down, bottom):
        m, spatial = self.num_output, bottom[0].shape[2:]
        p = int(np.prod(self.out))
        for i, (y, x) in enumerate(zip(top, bottom)):
            n, dy = x.shape[0], y.gpu_diff
            if self.bias_term:
                blas.bias_backward(n, m, p, dy, self.blobs[1].mutable_gpu_diff)
            path = self._device_path(n)
            if path == "im2col":
                self._im2col_backward(i, y, x, propagate_down[i])
                continue
            self._implicit_weight_grad(x.gpu_data, dy, n, spatial, self.out, self.channels,
                                       m, self.blobs[0].mutable_gpu_diff)
            if not propagate_down[i]:
                continue
            if path == "1x1":
                self._backward_data_1x1(dy, n, x.mutable_gpu_diff)
            elif max(self.stride) <= _IMPLICIT_DX_MAX_STRIDE:
                self._implicit_data_grad(dy, n, spatial, self.out, self.channels, m,
                                         self.blobs[0].gpu_data, x.mutable_gpu_diff)
            else:
                self._column_data_grad(x, dy)

    def _backward_data_1x1(self, dy, n, dx):
        """dx[b, group] (cg, P) = W_group^T (cg, mg) @ dy[b, group] (mg, P), batched on b."""
        m, c, g, p = self.num_output, self.channels, self.group, int(np.prod(self.out))
        mg, cg, weight = m // g, c // g, self.blobs[0].gpu_data
        for group in range(g):
            blas.gemm(True, False, cg, p, mg, 1.0, weight + 4 * group * mg * cg,
                      dy + 4 * group * mg * p, 0.0, dx + 4 * group * cg * p,
                      batch=n, stride_b=m * p, stride_c=c * p)

    def _column_data_grad(self, x, dy):
        """dx = col2im(W^T dY) through the column gradient, a chunk of images at a time: the
        data gradient of strided layers, where the implicit gather would multiply zeros."""
        m, g = self.num_output, self.group
        mg, ckg = m // g, self.channels // g * int(np.prod(self.kernel))
        p, spatial = int(np.prod(self.out)), x.shape[2:]
        image_in, image_out = self.channels * int(np.prod(spatial)), m * p
        geometry, w = self._geometry_2d(spatial), self.blobs[0].gpu_data
        for images in self._chunks(x.shape[0]):
            start, n = images.start, len(range(x.shape[0])[images])
            self._dcol.reshape((g * ckg, n * p))
            dcol = self._dcol.mutable_gpu_data
            for group in range(g):   # dcol_group[:, bP:(b+1)P] = W_group^T @ dY[b, group]
                blas.gemm(True, False, ckg, p, mg, 1.0, w + 4 * group * mg * ckg,
                          dy + 4 * (start * image_out + group * mg * p), 0.0,
                          dcol + 4 * group * ckg * n * p,
                          ldc=n * p, batch=n, stride_b=image_out, stride_c=p)
            self._device_col2im(dcol, n, self.channels, geometry,
                                x.mutable_gpu_diff + 4 * start * image_in)

    def _im2col_backward(self, i, y, x, down):
        m, g = self.num_output, self.group
        mg, ckg = m // g, self.channels // g * int(np.prod(self.kernel))
        p, spatial = int(np.prod(self.out)), x.shape[2:]
        image_in, image_out = self.channels * int(np.prod(spatial)), m * p
        weight, dy = self.blobs[0], y.gpu_diff
        for images in self._chunks(x.shape[0]):
            start, n = images.start, len(range(x.shape[0])[images])
            if self._device_cols[i]:
                col = self._col_blobs[i].gpu_data
            else:
                col = self._col_blob(0, self._col_shape(n)).mutable_gpu_data
                self._device_im2col(x.gpu_data + 4 * start * image_in, n, spatial, col)
            self._dy_rows.reshape((m, n * p))
            dy_rows = self._dy_rows.mutable_gpu_data
            self.launch_1d("convolution_dy_to_rows", m * n * p, dy + 4 * start * image_out,
                           np.int32(n), np.int32(m), np.int32(p), dy_rows)
            dw = weight.mutable_gpu_diff
            for group in range(g):   # dW_group (mg, ckg) += dY_group (mg, nP) @ col^T
                blas.gemm(False, True, mg, ckg, n * p, 1.0, dy_rows + 4 * group * mg * n * p,
                          col + 4 * group * ckg * n * p, 1.0, dw + 4 * group * mg * ckg)
            if down:
                self._dcol.reshape((g * ckg, n * p))
                dcol, w = self._dcol.mutable_gpu_data, weight.gpu_data
                for group in range(g):   # dcol_group (ckg, nP) = W_group^T @ dY_group
                    blas.gemm(True, False, ckg, n * p, mg, 1.0, w + 4 * group * mg * ckg,
                              dy_rows + 4 * group * mg * n * p, 0.0,
                              dcol + 4 * group * ckg * n * p)
                self._device_col2im(dcol, n, self.channels, self._geometry_2d(spatial),
                                    x.mutable_gpu_diff + 4 * start * image_in)

    # -- implicit GEMM launchers (cuda/convolution.cu) --------------------------------------------
    # Written for a convolution of ``channels`` -> ``outputs`` channels from maps of size
    # ``conv_in`` to ``conv_out`` with this layer's kernel geometry and groups, with the weight
    # laid out (outputs, channels / G, *kernel): Convolution calls them with its own sizes,
    # Deconvolution (whose forward is a convolution's data gradient) with the roles swapped.
    def _launch_implicit(self, name, grid, n, conv_in, conv_out, channels, outputs, *args):
        self.launch(name, grid, _IG_THREADS, np.int32(n), np.int32(channels),
                    *self._geometry_2d(conv_in, conv_out), np.int32(outputs),
                    np.int32(self.group), *args)

    def _implicit_forward(self, x, n, conv_in, conv_out, channels, outputs, weight, bias, relu,
                          y):
        """y (n, outputs, *conv_out) = conv(x (n, channels, *conv_in)) (+ bias, then ReLU)."""
        cols = n * int(np.prod(conv_out))
        grid = (_cdiv(cols, _IG_TILE), _cdiv(outputs // self.group, _IG_TILE), self.group)
        self._launch_implicit("convolution_forward_implicit_v1", grid, n, conv_in, conv_out,
                              channels, outputs, x, weight, bias, np.int32(bool(relu)), y)

    def _implicit_weight_grad(self, x, dy, n, conv_in, conv_out, channels, outputs, dw):
        """dw (outputs, channels / G, *kernel) += dY col(x)^T, summed over the n images.

        When dW has fewer 64x64 tiles than _DW_BLOCKS, the reduction over the n P columns is
        split into slices of at least _DW_MIN_SLICE columns, one block column each, whose
        partial sums (a layer-owned blob of slices x the weight) are added in a fixed order by a
        second kernel: deterministic, and enough blocks for a GPU when the weight is small."""
        cols = n * int(np.prod(conv_out))
        mg, depth = outputs // self.group, channels // self.group * int(np.prod(self.kernel))
        tiles = _cdiv(mg, _IG_TILE) * _cdiv(depth, _IG_TILE) * self.group
        slices = max(1, min(_cdiv(_DW_BLOCKS, tiles), cols // _DW_MIN_SLICE))
        slice_len = _cdiv(_cdiv(cols, slices), _IG_STEP) * _IG_STEP
        slices = _cdiv(cols, slice_len)
        grid = (_cdiv(depth, _IG_TILE), _cdiv(mg, _IG_TILE), self.group * slices)
        count = outputs * depth
        out = dw
        if slices > 1:
            self._dw_partial.reshape((slices, count))
            out = self._dw_partial.mutable_gpu_data
        self._launch_implicit("convolution_weight_grad_implicit_v1", grid, n, conv_in, conv_out,
                              channels, outputs, np.int32(slice_len), x, dy, out,
                              np.int32(slices == 1))
        if slices > 1:
            self.launch_1d("convolution_weight_grad_reduce", count, out, np.int32(slices), dw)

    def _implicit_data_grad(self, dy, n, conv_in, conv_out, channels, outputs, weight, dx):
        """dx (n, channels, *conv_in) = the adjoint of the convolution applied to dy (n,
        outputs, *conv_out), gathered per x cell (overwrites dx)."""
        cols = n * int(np.prod(conv_in))
        grid = (_cdiv(cols, _IG_TILE), _cdiv(channels // self.group, _IG_TILE), self.group)
        self._launch_implicit("convolution_backward_data_implicit_v1", grid, n, conv_in,
                              conv_out, channels, outputs, dy, weight, dx)


def _cdiv(a, b):
    return -(-int(a) // int(b))
