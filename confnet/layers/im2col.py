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
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided


def output_shape(spatial, kernel, pad, stride, dilation):
    """The convolution output size along every spatial axis (may be < 1 for a too-big kernel)."""
    return tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for size, k, p, s, d in zip(spatial, kernel, pad, stride, dilation))


def pad_spatial(x, before, after, value=0):
    """x padded on its spatial axes (2 on) by ``before``/``after`` cells per axis; x itself if
    there is nothing to pad."""
    if not any(before) and not any(after):
        return x
    widths = [(0, 0)] * 2 + list(zip(before, after))
    return np.pad(x, widths, constant_values=value)


def window(offset, stride, dilation, out):
    """Index of the cells of a padded (N, C, *spatial) array that kernel offset ``offset`` reads
    for every output position: one strided slice per spatial axis."""
    return (slice(None), slice(None)) + tuple(
        slice(k * d, k * d + s * (n - 1) + 1, s)
        for k, s, d, n in zip(offset, stride, dilation, out))


def im2col(x, kernel, pad, stride, dilation):
    """x (N, C, *spatial) -> col (C, *kernel, N, *out), a new contiguous array in x's dtype."""
    n = len(kernel)
    out = output_shape(x.shape[2:], kernel, pad, stride, dilation)
    xp = pad_spatial(x, pad, pad)
    axis_strides = xp.strides[2:]
    windows = as_strided(
        xp, shape=xp.shape[:2] + tuple(kernel) + out,
        strides=(xp.strides[:2] + tuple(st * d for st, d in zip(axis_strides, dilation))
                 + tuple(st * s for st, s in zip(axis_strides, stride))),
        writeable=False)
    order = (1, *range(2, 2 + n), 0, *range(2 + n, 2 + 2 * n))
    col = np.empty([windows.shape[a] for a in order], x.dtype)
    np.copyto(col, windows.transpose(order))
    return col


def accumulate_windows(part, out, kernel, pad, stride, dilation, pad_after=None):
    """The adjoint of reading windows: for every kernel offset, add ``part(offset)`` (an array
    of shape (N, C, *out_spatial)) to the cells of the padded input that offset reads; write the
    unpadded sum to ``out`` (N, C, *spatial), overwriting it. ``pad_after`` (default ``pad``)
    is the padding after the end of each axis (pooling pads more when a window hangs over)."""
    pad_after = pad if pad_after is None else pad_after
    padded = any(pad) or any(pad_after)
    acc = out
    if padded:
        acc = np.zeros(out.shape[:2] + tuple(size + b + a for size, b, a
                                             in zip(out.shape[2:], pad, pad_after)), out.dtype)
    else:
        acc[...] = 0
    for offset in np.ndindex(*kernel):
        contribution = part(offset)
        acc[window(offset, stride, dilation, contribution.shape[2:])] += contribution
    if padded:
        crop = tuple(slice(b, b + size) for b, size in zip(pad, out.shape[2:]))
        out[...] = acc[(slice(None), slice(None)) + crop]
    return out


def col2im(col, out, kernel, pad, stride, dilation):
    """col (C, *kernel, N, *out_spatial) -> ``out`` (N, C, *spatial), overwritten with the sum of
    every column entry at the input position im2col read it from."""
    return accumulate_windows(lambda offset: col[(slice(None),) + offset].swapaxes(0, 1),
                              out, kernel, pad, stride, dilation)
