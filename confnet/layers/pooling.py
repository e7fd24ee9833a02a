"""Pooling: the max or the mean of every window of the spatial axes."""

import numpy as np

from .base import Layer
from .im2col import SCRATCH, Scratch, accumulate_windows, interior, pad_spatial, window
from .registry import register_layer

MAX, AVE, STOCHASTIC = 0, 1, 2
CEIL, FLOOR = 0, 1

# AVE pooling of maps up to this size on a side runs as two matrix products with 0/1 window
# matrices (y = A_h x A_w^T / pool_size), which costs size / kernel times the additions of
# summing the windows but avoids numpy's per-row overhead on their short strided rows; on
# small maps (CIFAR-10-quick's 16 x 16 and 8 x 8) it is several times faster.
_AVE_MATRIX_MAX_SIZE = 32

# MAX pooling copies the cells of every window offset out of the input (and backward builds the
# index of the winning cells) for a chunk of images of at most this many bytes at a time.
_CHUNK_BYTES = 8 << 20


@register_layer("Pooling")
class Pooling(Layer):
    """MAX: y[n, c, i, j] = max over the window of (i, j); AVE: the window's sum / pool_size.

    The window of output row i covers input rows [i * stride - pad, i * stride - pad + kernel)
    (columns likewise). Cells outside the input never win a MAX. AVE sums the cells inside the
    input and divides by Caffe's pool_size = (hend - hstart) * (wend - wstart), where
    hend = min(hstart + kernel, H + pad) is taken before clipping to the input: padding counts,
    overhang past the padding does not.

    bottom: 1 blob (N, C, H, W).
    top: (N, C, PH, PW) with PH = ceil((H + 2 pad - kernel) / stride) + 1 (floor when
         round_mode is FLOOR), less 1 when padding is used and the last window would start at
         or past H + pad (PW likewise). MAX may have a second top, the argmax mask: the index
         h * W + w within the channel of the winning cell (first maximum in row-major window
         order on ties), as a float, as in Caffe.
    backward: MAX routes dy to its window's winning cell; AVE spreads dy / pool_size over
         the window. Overlapping windows add up.

    Settings: pool (MAX, AVE; STOCHASTIC is not supported), kernel_size or kernel_h/kernel_w,
    stride or stride_h/stride_w, pad or pad_h/pad_w, global_pooling (window = whole input),
    round_mode (CEIL, FLOOR); engine does not change the result.
    """

    params = ("pooling_param",)
    num_bottom = 1
    min_top, max_top = 1, 2
    has_gpu = True
    kernels = "pooling.cu"

    def layer_setup(self, bottom, top):
        p = self.param.pooling_param
        self.method = p.pool
        self.require(self.method in (MAX, AVE),
                     "pool: STOCHASTIC is not supported; use MAX or AVE")
        self.require(len(top) == 1 or self.method == MAX,
                     "a second top (the argmax mask) needs pool: MAX")
        self.global_pooling = p.global_pooling
        self.kernel = self._pair(p, "kernel", "kernel_size", None)
        self.pad = self._pair(p, "pad", "pad", 0)
        self.stride = self._pair(p, "stride", "stride", 1)
        self.require(all(s > 0 for s in self.stride), f"stride must be positive, got {self.stride}")
        if self.global_pooling:
            self.require(self.pad == (0, 0) and self.stride == (1, 1),
                         "global_pooling takes no pad and no stride")
        else:
            self.require(all(k > 0 for k in self.kernel),
                         f"kernel size must be positive, got {self.kernel}")
            self.require(all(pd < k for pd, k in zip(self.pad, self.kernel)),
                         f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        self.round_mode = p.round_mode
        self._kept = Scratch()  # MAX: the winner masks forward keeps for backward
        self._ave_geometry = None
        # MAX on the device: the index h * W + w of each window's winner, for backward.
        self.argmax = self.new_blob(dtype=np.int32) if self.method == MAX else None

    def _pair(self, p, hw, field, default):
        """(h, w) from ``field`` or from the ``<hw>_h``/``<hw>_w`` pair (not both)."""
        has_hw = p.HasField(f"{hw}_h"), p.HasField(f"{hw}_w")
        if hw == "kernel" and self.global_pooling:
            self.require(not (p.HasField(field) or any(has_hw)),
                         "global_pooling takes the whole input as the window: do not set a "
                         "kernel size")
            return None
        if any(has_hw):
            self.require(all(has_hw) and not p.HasField(field),
                         f"set either {field} or both {hw}_h and {hw}_w")
            return getattr(p, f"{hw}_h"), getattr(p, f"{hw}_w")
        self.require(default is not None or p.HasField(field),
                     f"{field} (or {hw}_h and {hw}_w) must be set")
        value = getattr(p, field)
        return value, value

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.require(len(shape) == 4, f"needs a 4-D input (N, C, H, W), got shape {shape}")
        spatial = shape[2:]
        if self.global_pooling:
            self.kernel = spatial
        axes = list(zip(spatial, self.kernel, self.pad, self.stride))
        self.out = tuple(self._pooled_size(*axis) for axis in axes)
        self.require(all(o > 0 for o in self.out),
                     f"kernel {self.kernel} is larger than the padded input {spatial} "
                     f"(pad {self.pad})")
        self.require(all((o - 1) * s - pd < size for (size, _, pd, s), o in zip(axes, self.out)),
                     f"with stride {self.stride} the last window of an input of size {spatial} "
                     "starts past its end; use a smaller stride or round_mode: FLOOR")
        # Padding after the end of each axis: pad, plus whatever the last window hangs over.
        self.pad_after = tuple(max(pd, (o - 1) * s + k - size - pd)
                               for (size, k, pd, s), o in zip(axes, self.out))
        for blob in top:
            blob.reshape(shape[:2] + self.out)
        if self.argmax is not None:
            self.argmax.reshape(top[0].shape)
        self.batch = shape[0]
        # The windows tile the input exactly (LeNet's 2 x 2, stride 2): each cell is in one.
        self.tiles = self.stride == tuple(self.kernel) and not any(self.pad + self.pad_after)
        if self.method == AVE and self._ave_geometry != axes:
            self._ave_geometry = axes
            sizes = [self._window_sizes(*axis, o) for axis, o in zip(axes, self.out)]
            self.pool_size = np.outer(*sizes).astype(self.dtype)
            self.window_matrices = None
            if max(spatial) <= _AVE_MATRIX_MAX_SIZE:
                self.window_matrices = [self._window_matrix(*axis, o)
                                        for axis, o in zip(axes, self.out)]

    def _pooled_size(self, size, kernel, pad, stride):
        span = size + 2 * pad - kernel
        pooled = (-(-span // stride) if self.round_mode == CEIL else span // stride) + 1
        if any(self.pad) and (pooled - 1) * stride >= size + pad:
            pooled -= 1
        return pooled

    @staticmethod
    def _window_sizes(size, kernel, pad, stride, out):
        start = np.arange(out) * stride - pad
        return np.minimum(start + kernel, size + pad) - start

    def _window_matrix(self, size, kernel, pad, stride, out):
        """(out, size): row o is 1 on the input cells of window o (padding left out)."""
        start = np.arange(out)[:, None] * stride - pad
        cells = np.arange(size)
        return ((cells >= start) & (cells < start + kernel)).astype(self.dtype)

    def _windows(self):
        """For every kernel offset (row-major), the index of the cells of the padded input it
        reads for all output positions."""
        return [window(offset, self.stride, (1, 1), self.out)
                for offset in np.ndindex(*self.kernel)]

    # -- compute ---------------------------------------------------------------------------------
    def forward_cpu(self, bottom, top):
        if self.method == MAX:
            self._forward_max(bottom[0].data, top)
        else:
            self._forward_ave(bottom[0].data, top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = top[0].diff, bottom[0].diff
        if self.method == MAX and self.tiles:
            cells = dx.reshape(dx.shape[:2] + (self.out[0], self.kernel[0],
                                                self.out[1], self.kernel[1]))
            for k, (i, j) in enumerate(np.ndindex(*self.kernel)):
                np.multiply(dy, self.winner[k], out=cells[:, :, :, i, :, j])
        elif self.method == MAX:
            self._backward_max(dy, dx)
        elif self.window_matrices is not None:
            rows, cols = self.window_matrices
            scaled = (dy / self.pool_size).reshape(-1, self.out[1])
            spread = np.matmul(scaled, cols).reshape(-1, self.out[0], dx.shape[3])
            np.matmul(rows.T, spread, out=dx.reshape(spread.shape[0], -1, dx.shape[3]))
        else:
            scaled = dy / self.pool_size
            accumulate_windows(lambda offset: scaled, dx, self.kernel, self.pad, self.stride,
                               (1, 1), self.pad_after)

    def _backward_max(self, dy, dx):
        """Overlapping windows: dy added at each window's winning cell, a chunk of images at a
        time with np.add.at on the flat index of the winners in the padded input."""
        padded = SCRATCH.get("pool_dx", dx.shape[:2] + tuple(
            size + b + a for size, b, a in zip(dx.shape[2:], self.pad, self.pad_after)),
            dx.dtype)
        padded.fill(0)
        for images in self._image_chunks(dy[:1].size * 8):   # 8: the bytes of an index
            np.add.at(padded[images].reshape(-1),
                      self._winner_index(self.winner[:, images], padded.shape[2:]),
                      dy[images].reshape(-1))
        dx[...] = padded[(slice(None), slice(None)) + interior(dx.shape[2:], self.pad)]

    def _winner_index(self, winners, padded_spatial):
        """The flat index, in padded images, of the winning cell of every window: where the
        window starts plus the winning offset's distance from there."""
        kernel_size = len(winners)
        local = np.zeros(winners.shape[1:], np.min_scalar_type(kernel_size - 1))
        for k in range(1, kernel_size):
            local += winners[k].view(np.uint8) * local.dtype.type(k)
        height, width = padded_spatial
        rows, cols = np.unravel_index(np.arange(kernel_size), self.kernel)
        index = (rows * width + cols)[local]
        index += (np.arange(self.out[0])[:, None] * self.stride[0] * width
                  + np.arange(self.out[1]) * self.stride[1])
        planes = np.arange(local.shape[0] * local.shape[1]) * (height * width)
        index += planes.reshape(local.shape[:2] + (1, 1))
        return index.reshape(-1)

    def _image_chunks(self, per_image):
        """Slices of the batch that need at most _CHUNK_BYTES (at least one image) when one
        image needs ``per_image`` bytes."""
        step = max(1, _CHUNK_BYTES // max(per_image, 1))
        return [slice(start, start + step) for start in range(0, self.batch, step)]

    def _padded(self, x, value):
        shape = x.shape[:2] + tuple(size + b + a for size, b, a
                                    in zip(x.shape[2:], self.pad, self.pad_after))
        return pad_spatial(x, self.pad, self.pad_after, value,
                           out=SCRATCH.get("pool_x", shape, x.dtype))

    def _forward_max(self, x, top):
        xp = self._padded(x, -np.inf)
        best = top[0].data
        windows = self._windows()
        self.winner = self._kept.get("winner", (len(windows),) + best.shape, bool)
        for images in self._image_chunks(best[:1].size * len(windows) * x.itemsize):
            self._max_chunk(xp[images], best[images], self.winner[:, images], windows)
        if len(top) > 1:
            top[1].data[...] = self._mask(x.shape[3])

    @staticmethod
    def _max_chunk(xp, best, winners, windows):
        # Every kernel offset's cells copied out once into contiguous arrays: the strided
        # windows have short rows, which numpy walks several times slower than contiguous data.
        cells = SCRATCH.get("pool_cells", (len(windows),) + best.shape, xp.dtype)
        for values, index in zip(cells, windows):
            np.copyto(values, xp[index])
        np.max(cells, axis=0, out=best)
        # winners[k]: kernel offset k (row-major) holds its window's maximum and no earlier
        # offset does, so a tie goes to the first cell as in Caffe. Boolean masks, rather than
        # an argmax updated under a mask, keep every step a plain vectorized operation.
        open_ = SCRATCH.get("pool_open", best.shape, bool)
        open_.fill(True)
        for winner, values in zip(winners, cells):
            np.equal(values, best, out=winner)
            winner &= open_
            open_ ^= winner

    def _mask(self, width):
        """Caffe's argmax mask: h * W + w of the winning cell within its channel."""
        kw, (sh, sw), (ph, pw) = self.kernel[1], self.stride, self.pad
        offset = sum(k * winner for k, winner in enumerate(self.winner))
        rows = np.arange(self.out[0])[:, None] * sh - ph + offset // kw
        cols = np.arange(self.out[1]) * sw - pw + offset % kw
        return rows * width + cols

    # -- device ------------------------------------------------------------------------------------
    def _geometry(self, x):
        """The kernels' shape arguments: height, width, pooled_h, pooled_w, kernel, stride, pad."""
        values = (*x.shape[2:], *self.out, *self.kernel, *self.stride, *self.pad)
        return tuple(np.int32(v) for v in values)

    def forward_gpu(self, bottom, top):
        x, y = bottom[0], top[0]
        if self.method == MAX:
            self.launch_1d("pooling_forward_max", y.count, x.gpu_data, *self._geometry(x),
                           y.mutable_gpu_data, self.argmax.mutable_gpu_data,
                           top[1].mutable_gpu_data if len(top) > 1 else 0)
        else:
            self.launch_1d("pooling_forward_ave", y.count, x.gpu_data, *self._geometry(x),
                           y.mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, dy = bottom[0], top[0].gpu_diff
        if self.method == MAX:
            self.launch_1d("pooling_backward_max", x.count, dy, self.argmax.gpu_data,
                           *self._geometry(x), x.mutable_gpu_diff)
        else:
            self.launch_1d("pooling_backward_ave", x.count, dy, *self._geometry(x),
                           x.mutable_gpu_diff)

    def _forward_ave(self, x, y):
        if self.window_matrices is not None:
            rows, cols = self.window_matrices
            summed = np.matmul(x.reshape(-1, x.shape[3]), cols.T).reshape(-1, x.shape[2],
                                                                          self.out[1])
            np.matmul(rows, summed, out=y.reshape(summed.shape[0], *self.out))
            y /= self.pool_size
            return
        xp = self._padded(x, 0)
        y[...] = 0
        for index in self._windows():
            y += xp[index]
        y /= self.pool_size
