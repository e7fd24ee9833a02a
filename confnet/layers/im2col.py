"""im2col / col2im: convolution as one matrix product, and the window helpers pooling shares.

For x of shape (N, C, *spatial) and, per spatial axis, a kernel size k, padding p, stride s and
dilation d, the output size along that axis is

    out = (size + 2p - (d (k - 1) + 1)) // s + 1

and, with xpad the input zero-padded by p on both sides of every spatial axis,

    col[c, k_1..k_n, b, o_1..o_n] = xpad[b, c, o_1 s_1 + k_1 d_1, ..., o_n s_n + k_n d_n]

so ``col.reshape(C * prod(kernel), N * prod(out))`` multiplied on the left by a weight of shape
(M, C * prod(kernel)) gives the convolution of every image of the batch at once, as an
(M, N * prod(out)) matrix. The row order (c, k_1..k_n) is the order of a Caffe weight blob
(M, C, k_1..k_n) flattened.

col2im is the adjoint of im2col: every column entry is added back to the input position it was
read from (overlapping windows sum); entries that were read from the padding are dropped.

Both work for any number of spatial axes. im2col is a single strided copy; col2im loops over
the prod(kernel) kernel offsets, each step one vectorized add over the whole batch.

col2im_batch_last is the same sum in the batch-last layout: col (C, *kernel, *out, N) into a
padded (C, *padded, N) array. With the batch innermost, every add runs over rows of
out_last * N contiguous values (stride 1) instead of rows of out_last values, which is what
makes it several times faster than col2im for small images (LeNet's conv2 has rows of 8).

im2col_batch_last reads the columns in that layout too: x is first copied into a padded
batch-last array (C, *padded, N), after which every kernel offset's cells for one channel and
output row are one contiguous run of out_last * N values (at stride 1), so the copy runs at
memory speed; the batch-first im2col copies rows of out_last values. to_batch_last and
from_batch_last move an (N, C, ...) array to and from that layout one channel at a time (each
channel's block stays in the cache while it is transposed).

Scratch keeps the buffers of these functions between calls, so that a training iteration
allocates (and page-faults in) no large array.
"""

import math
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..threads import split, workers


class Scratch:
    """Named arrays reused between calls: ``get`` returns a view of the memory kept under that
    name, reallocated only when it is too small or of another dtype. Its contents are left
    over from the last use. ``local()`` is the calling thread's own Scratch, for work split
    over threads (each worker's buffers its own)."""

    def __init__(self):
        self._arrays = {}
        self._local = threading.local()

    def local(self):
        """A Scratch of the calling thread's own (made on its first call)."""
        mine = getattr(self._local, "scratch", None)
        if mine is None:
            mine = self._local.scratch = Scratch()
        return mine

    def get(self, name, shape, dtype):
        size = math.prod(shape)
        array = self._arrays.get(name)
        if array is None or array.size < size or array.dtype != dtype:
            array = self._arrays[name] = np.empty(max(size, 1), dtype)
        return array[:size].reshape(shape)


# Transient buffers (used within one forward or backward call) are shared by every layer: the
# layers of a process run one after another.
SCRATCH = Scratch()


def output_shape(spatial, kernel, pad, stride, dilation):
    """The convolution output size along every spatial axis (may be < 1 for a too-big kernel)."""
    return tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for size, k, p, s, d in zip(spatial, kernel, pad, stride, dilation))


def pad_spatial(x, before, after, value=0, out=None):
    """x padded on its spatial axes (2 on) by ``before``/``after`` cells per axis; x itself if
    there is nothing to pad. ``out``, if given, is the array of the padded shape to fill."""
    if not any(before) and not any(after):
        return x
    shape = x.shape[:2] + tuple(size + b + a for size, b, a in zip(x.shape[2:], before, after))
    out = np.empty(shape, x.dtype) if out is None else out
    inside = interior(x.shape[2:], before)
    for axis, cells in enumerate(inside, 2):   # fill only the bands around the inside
        lead = (slice(None),) * axis
        out[lead + (slice(0, cells.start),)] = value
        out[lead + (slice(cells.stop, None),)] = value
    out[(slice(None), slice(None)) + inside] = x
    return out


def interior(spatial, before):
    """The slices of a padded spatial block that hold the unpadded ``spatial`` cells."""
    return tuple(slice(b, b + size) for b, size in zip(before, spatial))


def window(offset, stride, dilation, out):
    """Index of the cells of a padded (N, C, *spatial) array that kernel offset ``offset`` reads
    for every output position: one strided slice per spatial axis."""
    return (slice(None), slice(None)) + tuple(
        slice(k * d, k * d + s * (n - 1) + 1, s)
        for k, s, d, n in zip(offset, stride, dilation, out))


def im2col(x, kernel, pad, stride, dilation, out=None, scratch=None):
    """x (N, C, *spatial) -> col (C, *kernel, N, *out), contiguous, in x's dtype: written into
    ``out`` if given (of that shape), else a new array. ``scratch`` (a Scratch) holds the
    padded copy of x."""
    n = len(kernel)
    out_shape = output_shape(x.shape[2:], kernel, pad, stride, dilation)
    padded = None
    if scratch is not None and any(pad):
        padded = scratch.get("im2col_pad", x.shape[:2] + tuple(
            size + 2 * p for size, p in zip(x.shape[2:], pad)), x.dtype)
    xp = pad_spatial(x, pad, pad, out=padded)
    axis_strides = xp.strides[2:]
    windows = as_strided(
        xp, shape=xp.shape[:2] + tuple(kernel) + out_shape,
        strides=(xp.strides[:2] + tuple(st * d for st, d in zip(axis_strides, dilation))
                 + tuple(st * s for st, s in zip(axis_strides, stride))),
        writeable=False)
    order = (1, *range(2, 2 + n), 0, *range(2 + n, 2 + 2 * n))
    col = np.empty([windows.shape[a] for a in order], x.dtype) if out is None else out
    copy_split(col, windows.transpose(order))
    return col


def copy_split(out, values):
    """np.copyto(out, values), split over confnet's worker threads along axis 0, or, when axis
    0 is too short to share evenly (CIFAR's 3 colour channels for 2 workers), along the first
    two axes taken together. (Not always the latter: every part is one numpy call, which costs
    microseconds, and LeNet's or CIFAR's conv3 windows have hundreds of small rows.)"""
    if out.ndim < 2 or len(out) >= 4 * workers():
        split(len(out), lambda a, b: np.copyto(out[a:b], values[a:b]), out.nbytes)
        return
    inner = out.shape[1]

    def rows(a, b):
        for i in range(a, b):
            row = divmod(i, inner)
            np.copyto(out[row], values[row])
    split(out.shape[0] * inner, rows, out.nbytes)


def accumulate_windows(part, out, kernel, pad, stride, dilation, pad_after=None):
    """The adjoint of reading windows: for every kernel offset, add ``part(offset)`` (an array
    of shape (N, C, *out_spatial)) to the cells of the padded input that offset reads; write the
    unpadded sum to ``out`` (N, C, *spatial), overwriting it. ``pad_after`` (default ``pad``)
    is the padding after the end of each axis (pooling pads more when a window hangs over)."""
    pad_after = pad if pad_after is None else pad_after
    padded = any(pad) or any(pad_after)
    acc = out
    if padded:
        acc = SCRATCH.get("accumulate_windows", out.shape[:2] + tuple(
            size + b + a for size, b, a in zip(out.shape[2:], pad, pad_after)), out.dtype)
    acc.fill(0)
    for offset in np.ndindex(*kernel):
        contribution = part(offset)
        acc[window(offset, stride, dilation, contribution.shape[2:])] += contribution
    if padded:
        out[...] = acc[(slice(None), slice(None)) + interior(out.shape[2:], pad)]
    return out


def col2im(col, out, kernel, pad, stride, dilation):
    """col (C, *kernel, N, *out_spatial) -> ``out`` (N, C, *spatial), overwritten with the sum of
    every column entry at the input position im2col read it from."""
    return accumulate_windows(lambda offset: col[(slice(None),) + offset].swapaxes(0, 1),
                              out, kernel, pad, stride, dilation)


def col2im_batch_last(col, acc, stride, dilation):
    """col (C, *kernel, *out, N) -> ``acc`` (C, *padded, N), overwritten with the sum of every
    column entry at the padded input position it was read from (the adjoint of reading
    col[c, k, o, b] = xpad[b, c, o s + k d] from xpad laid out batch-last)."""
    n = (col.ndim - 2) // 2
    kernel, out = col.shape[1:1 + n], col.shape[1 + n:1 + 2 * n]

    def channels(a, b):   # each worker sums its own channels
        acc[a:b].fill(0)
        for offset in np.ndindex(*kernel):
            cells = tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                          for k, s, d, o in zip(offset, stride, dilation, out))
            acc[(slice(a, b),) + cells] += col[(slice(a, b),) + offset]
    split(len(acc), channels, col.nbytes)
    return acc


# to_batch_last moves this many images at a time. A transposing copy reads one stream per
# image of the block; with 8 streams the prefetcher keeps up and each destination row takes a
# 32-byte piece, while a whole batch (100 streams) runs 5x slower on CIFAR-10-quick's conv2
# input (measured: 0.8 ms against 4.2 ms for 100 x 32 x 16 x 16).
_TRANSPOSE_IMAGES = 8


def to_batch_last(x, out):
    """x (N, C, *rest) -> ``out`` (C, *rest, N) (any writable view of that shape)."""
    order = (*range(1, x.ndim), 0)

    def channels(a, b):   # each worker writes its own rows of out: no shared cache lines
        for start in range(0, x.shape[0], _TRANSPOSE_IMAGES):
            images = slice(start, start + _TRANSPOSE_IMAGES)
            np.copyto(out[a:b, ..., images], x[images, a:b].transpose(order))
    split(x.shape[1], channels, x.nbytes)
    return out


def from_batch_last(x, out, add=None):
    """x (C, *rest, N) -> ``out`` (N, C, *rest) (any writable view of that shape), plus
    ``add[c]`` on channel c if given (a bias, added while the channel is in the cache)."""
    order = (x.ndim - 2, *range(x.ndim - 2))

    def channels(a, b):
        for c in range(a, b):
            np.copyto(out[:, c], x[c].transpose(order))
            if add is not None:
                out[:, c] += add[c]
    split(x.shape[0], channels, x.nbytes)
    return out


def im2col_batch_last(x, kernel, pad, stride, dilation, out, scratch):
    """x (N, C, *spatial) -> ``out`` (C, *kernel, *out_spatial, N), contiguous:
    out[c, k, o, b] = xpad[b, c, o s + k d]. ``scratch`` (a Scratch) holds the padded
    batch-last copy of x."""
    padded, inside = padded_batch_last(x.shape[1:2] + x.shape[2:] + x.shape[:1], pad, x.dtype,
                                       scratch)
    to_batch_last(x, inside)
    return windows_batch_last(padded, kernel, stride, dilation, out)


def padded_batch_last(shape, pad, dtype, scratch):
    """A scratch array (C, *padded, N) for a batch-last ``shape`` (C, *spatial, N) padded by
    ``pad`` cells on both sides of every spatial axis, its padding zeroed; and the view of its
    inside, for the caller to fill."""
    padded = scratch.get("im2col_batch_last", shape[:1] + tuple(
        size + 2 * p for size, p in zip(shape[1:-1], pad)) + shape[-1:], dtype)
    inside = (slice(None),) + interior(shape[1:-1], pad)
    for axis, cells in enumerate(inside[1:], 1):   # zero only the bands around the inside
        lead = (slice(None),) * axis
        padded[lead + (slice(0, cells.start),)] = 0
        padded[lead + (slice(cells.stop, None),)] = 0
    return padded, padded[inside]


def windows_batch_last(padded, kernel, stride, dilation, out):
    """The columns of a padded batch-last array (C, *padded, N) copied into ``out``
    (C, *kernel, *out_spatial, N): out[c, k, o, b] = padded[c, o s + k d, b]."""
    n = len(kernel)
    axis_strides = padded.strides[1:1 + n]
    windows = as_strided(
        padded, shape=out.shape,
        strides=(padded.strides[:1] + tuple(st * d for st, d in zip(axis_strides, dilation))
                 + tuple(st * s for st, s in zip(axis_strides, stride)) + padded.strides[-1:]),
        writeable=False)
    copy_split(out, windows)
    return out


def row_windows_batch_last(padded, stride_w, dilation_w, out):
    """The windows of a padded batch-last array (C, Hp, Wp, N) along its last spatial axis
    only, copied into ``out`` (C, kernel_w, Hp, Wo, N): out[c, b, h, o, n] =
    padded[c, h, o stride_w + b dilation_w, n]. Every padded row is kept: a convolution with
    stride 1 along the rows reads kernel row a as the rows [a d_h, a d_h + Ho) of this array,
    a plain slice, so the columns of a k_h x k_w kernel cost k_w copies of the input instead
    of k_h k_w."""
    st = padded.strides
    windows = as_strided(padded, shape=out.shape,
                         strides=(st[0], st[2] * dilation_w, st[1], st[2] * stride_w, st[3]),
                         writeable=False)
    copy_split(out, windows)
    return out

