"""Pooling: the max or the mean of every window of the spatial axes."""

import numpy as np

from ..threads import split
from .base import Layer
from .im2col import SCRATCH, Scratch, accumulate_windows, pad_spatial, window
from .registry import register_layer

MAX, AVE, STOCHASTIC = 0, 1, 2
CEIL, FLOOR = 0, 1

# AVE pooling of maps up to this size on a side runs as two matrix products with 0/1 window
# matrices (y = A_h x A_w^T / pool_size), which costs size / kernel times the additions of
# summing the windows but avoids numpy's per-row overhead on their short strided rows; on
# small maps (CIFAR-10-quick's 16 x 16 and 8 x 8) it is several times faster.
_AVE_MATRIX_MAX_SIZE = 32

# The second of those products (over the rows) is a batch of one small product per plane, which
# numpy runs as one BLAS call each. With at most this many pooled columns it runs instead as one
# product of all the planes with kron(A_h^T, I_PW) (H PW, PH PW), which multiplies PW times as
# many terms (the zeros of the identity) in a single call: measured on CIFAR-10-quick's pool2
# (PW 8) 1.0 ms against 1.6 ms forward, pool3 (PW 4) 0.3 ms against 1.7 ms.
_AVE_KRON_MAX_OUT = 8

# MAX pooling works on a chunk of images (tiling windows) or of planes (overlapping windows) at
# a time, of at most this many bytes of copied input: about one core's L2 cache, so that the
# running maximum, the winner index and the copied cells stay in it between their passes
# (measured on CIFAR-10-quick's pool1: 8 ms forward with 1 MiB chunks, 10 ms with 8 MiB).
_CHUNK_BYTES = 1 << 20


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
        self._phases = (_Phases(spatial, self.kernel, self.stride, self.pad, self.pad_after)
                        if self.method == MAX and not self.tiles else None)
        if self.method == AVE and self._ave_geometry != axes:
            self._ave_geometry = axes
            sizes = [self._window_sizes(*axis, o) for axis, o in zip(axes, self.out)]
            self.pool_size = np.outer(*sizes).astype(self.dtype)
            self.window_matrices = self.row_sums = None
            if max(spatial) <= _AVE_MATRIX_MAX_SIZE:
                self.window_matrices = [self._window_matrix(*axis, o)
                                        for axis, o in zip(axes, self.out)]
                if self.out[1] <= _AVE_KRON_MAX_OUT:
                    self.row_sums = np.kron(self.window_matrices[0].T,
                                            np.eye(self.out[1], dtype=self.dtype))

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
            if self.tiles:
                self._forward_max_tiles(bottom[0].data, top)
            else:
                self._forward_max_phases(bottom[0].data, top)
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
            self._backward_max_phases(dy, dx)
        elif self.row_sums is not None:   # the adjoints of _forward_ave's two products
            planes = dy.shape[0] * dy.shape[1]
            scaled = (dy / self.pool_size).reshape(planes, -1)
            spread = np.matmul(scaled, self.row_sums.T).reshape(-1, self.out[1])
            np.matmul(spread, self.window_matrices[1], out=dx.reshape(-1, dx.shape[3]))
        elif self.window_matrices is not None:
            rows, cols = self.window_matrices
            scaled = (dy / self.pool_size).reshape(-1, self.out[1])
            spread = np.matmul(scaled, cols).reshape(-1, self.out[0], dx.shape[3])
            np.matmul(rows.T, spread, out=dx.reshape(spread.shape[0], -1, dx.shape[3]))
        else:
            scaled = dy / self.pool_size
            accumulate_windows(lambda offset: scaled, dx, self.kernel, self.pad, self.stride,
                               (1, 1), self.pad_after)

    @staticmethod
    def _chunks(count, per_item):
        """Slices of range(count) that need at most _CHUNK_BYTES (at least one item) when one
        item (an image, a plane) needs ``per_item`` bytes."""
        step = max(1, _CHUNK_BYTES // max(per_item, 1))
        return [slice(start, min(start + step, count)) for start in range(0, count, step)]

    @classmethod
    def _each_chunk(cls, count, per_item, fn):
        """``fn(part)`` for every chunk of ``_chunks(count, per_item)``, the chunks shared out
        over confnet's worker threads (numpy's loops release the GIL; chunks touch disjoint
        rows, and each worker uses its own scratch)."""
        parts = cls._chunks(count, per_item)

        def run(a, b):
            for part in parts[a:b]:
                fn(part)
        split(len(parts), run, count * per_item)

    def _padded(self, x, value):
        shape = x.shape[:2] + tuple(size + b + a for size, b, a
                                    in zip(x.shape[2:], self.pad, self.pad_after))
        return pad_spatial(x, self.pad, self.pad_after, value,
                           out=SCRATCH.get("pool_x", shape, x.dtype))

    def _forward_max_tiles(self, x, top):
        """Windows that tile the input: every offset's cells copied out, their maximum, and one
        boolean winner mask per offset, which backward multiplies dy by."""
        xp = self._padded(x, -np.inf)
        best = top[0].data
        windows = self._windows()
        self.winner = self._kept.get("winner", (len(windows),) + best.shape, bool)
        for images in self._chunks(self.batch, best[:1].size * len(windows) * x.itemsize):
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
        if self.tiles:
            offset = sum(k * winner for k, winner in enumerate(self.winner))
        else:
            offset = self.winner.reshape(self.batch, -1, *self.winner.shape[1:])[
                :, :, :self.out[0], :self.out[1]].astype(np.int64)
        rows = np.arange(self.out[0])[:, None] * sh - ph + offset // kw
        cols = np.arange(self.out[1]) * sw - pw + offset % kw
        return rows * width + cols

    # -- MAX over overlapping windows: the input split into stride phases (see _Phases) ------
    def _forward_max_phases(self, x, top):
        n, c, height, width = x.shape
        planes, geo = n * c, self._phases
        ph_, pw_ = self.out
        self.winner = self._kept.get("winner", (planes, geo.hq, geo.wq), np.int8)
        best_all = top[0].data.reshape(planes, ph_, pw_)
        xs = x.reshape(planes, height, width)

        def chunk(part):
            scratch = SCRATCH.local()
            count = part.stop - part.start
            size = count * geo.plane_size
            phases = scratch.get("pool_phases", (len(geo.phases), size + geo.tail), x.dtype)
            geo.split(xs[part], phases, -np.inf)
            best = scratch.get("pool_best", (size,), x.dtype)
            more = scratch.get("pool_more", (size,), bool)
            taken = scratch.get("pool_taken", (size,), np.int8)
            winner = self.winner[part].reshape(-1)
            (first, shift), rest = geo.offsets[0], geo.offsets[1:]
            np.copyto(best, phases[first, shift:shift + size])
            winner.fill(0)
            # A strictly greater value takes over, so a tie stays with the earlier offset
            # (row-major): the first maximum wins, as in Caffe. Offsets come in increasing k,
            # so the winner is the largest k that took over: max(winner, k * more). Masked
            # copies (copyto where=) would branch on a random mask and run ~30x slower.
            for k, (phase, shift) in enumerate(rest, 1):
                values = phases[phase, shift:shift + size]
                np.greater(values, best, out=more)
                np.maximum(best, values, out=best)
                np.multiply(more, np.int8(k), out=taken)
                np.maximum(winner, taken, out=winner)
            np.copyto(best_all[part], best.reshape(count, geo.hq, geo.wq)[:, :ph_, :pw_])

        self._each_chunk(planes, geo.plane_size * len(geo.phases) * x.itemsize, chunk)
        if len(top) > 1:
            top[1].data[...] = self._mask(x.shape[3])

    def _backward_max_phases(self, dy, dx):
        """Each window's dy goes to its winning cell: per kernel offset, the windows it won
        add their dy into the shifted run of that offset's phase; the phases are then put back
        together into dx (the padding dropped)."""
        n, c, height, width = dx.shape
        planes, geo = n * c, self._phases
        ph_, pw_ = self.out
        dys, dxs = dy.reshape(planes, ph_, pw_), dx.reshape(planes, height, width)

        def chunk(part):
            scratch = SCRATCH.local()
            count = part.stop - part.start
            size = count * geo.plane_size
            grads = scratch.get("pool_phases", (len(geo.phases), size + geo.tail), dx.dtype)
            grads.fill(0)
            spread = scratch.get("pool_best", (count, geo.hq, geo.wq), dx.dtype)
            spread[:, ph_:], spread[:, :, pw_:] = 0, 0   # don't-care windows add nothing
            np.copyto(spread[:, :ph_, :pw_], dys[part])
            spread = spread.reshape(-1)
            winner = self.winner[part].reshape(-1)
            won = scratch.get("pool_more", (size,), bool)
            share = scratch.get("pool_share", (size,), dx.dtype)
            # Offsets in reverse: a cell then sums the windows that read it in row-major
            # window order (a later window reaches it through an earlier offset), the order
            # of the device kernel, so the two agree to the bit.
            for k, (phase, shift) in reversed(list(enumerate(geo.offsets))):
                np.equal(winner, k, out=won)
                np.multiply(spread, won, out=share)
                run = grads[phase, shift:shift + size]
                np.add(run, share, out=run)
            geo.merge(grads[:, :size].reshape(len(geo.phases), count, geo.hq, geo.wq),
                      dxs[part])

        self._each_chunk(planes, geo.plane_size * len(geo.phases) * dx.itemsize, chunk)

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
            if self.row_sums is not None:   # summed (planes, H PW) @ (H PW, PH PW)
                np.matmul(summed.reshape(summed.shape[0], -1), self.row_sums,
                          out=y.reshape(summed.shape[0], -1))
            else:
                np.matmul(rows, summed, out=y.reshape(summed.shape[0], *self.out))
            y /= self.pool_size
            return
        xp = self._padded(x, 0)
        y[...] = 0
        for index in self._windows():
            y += xp[index]
        y /= self.pool_size


class _Phases:
    """MAX pooling's stride phases of one input geometry (computed at reshape).

    Window (i, j) reads padded cell (i sh + a, j sw + b) for kernel offset (a, b). The padded
    input split into sh x sw phases, phase (r, t) holding the cells (r + sh u, t + sw v) as a
    (planes, Hq, Wq) array, offset (a, b) reads phase (a % sh, b % sw) at (i + a // sh,
    j + b // sw), which in the flattened phase is one contiguous run shifted by
    (a // sh) Wq + b // sw. Every step of forward and backward is then a plain vectorized
    operation over contiguous memory (strided views with rows of PW values run several times
    slower). Results live on the same (Hq, Wq) grid; cells with i >= PH or j >= PW are
    don't-cares (their reads wrap into the next row), dropped at the end. ``tail`` cells after
    the last plane keep the last runs inside the array.

    ``phases``: the (r, t) that some offset reads; ``offsets``: per kernel offset, row-major,
    (index into ``phases``, shift); ``cells``: per phase, (index of its grid cells that hold
    input cells, index of those input cells).
    """

    def __init__(self, spatial, kernel, stride, pad, pad_after):
        (sh, sw), (kh, kw) = stride, kernel
        padded = tuple(size + b + a for size, b, a in zip(spatial, pad, pad_after))
        self.hq, self.wq = -(-padded[0] // sh), -(-padded[1] // sw)
        self.plane_size = self.hq * self.wq
        reads = [((a % sh, b % sw), (a // sh) * self.wq + b // sw)
                 for a, b in np.ndindex(kh, kw)]
        self.phases = sorted({phase for phase, _ in reads})
        self.offsets = [(self.phases.index(phase), shift) for phase, shift in reads]
        self.tail = max(shift for _, shift in reads)
        self.every_cell = len(self.phases) == sh * sw   # else a stride above the kernel
        self.cells = [self._cells(phase, spatial, stride, pad) for phase in self.phases]

    def _cells(self, phase, spatial, stride, pad):
        """Phase row u holds padded row r + sh u, i.e. input row r + sh u - pad, which is
        inside for u in [u0, u1) (columns likewise)."""
        grid, inputs = [slice(None)], [slice(None)]
        for r, s, p, size, extent in zip(phase, stride, pad, spatial, (self.hq, self.wq)):
            u0 = max(0, -(-(p - r) // s))
            u1 = max(u0, min(extent, -(-(size + p - r) // s)))
            first = r + s * u0 - p
            grid.append(slice(u0, u1))
            inputs.append(slice(first, first + s * (u1 - u0 - 1) + 1, s) if u1 > u0
                          else slice(0, 0))
        return tuple(grid), tuple(inputs)

    def split(self, x, out, fill):
        """x (planes, H, W) -> out (phases, planes Hq Wq + tail); cells that hold no input
        cell (the padding, the overhang, the tail) are ``fill``."""
        planes = x.shape[0]
        out[:, planes * self.plane_size:] = fill
        grids = out[:, :planes * self.plane_size].reshape(len(self.phases), planes, self.hq,
                                                          self.wq)
        for target, (inside, cells) in zip(grids, self.cells):
            rows, cols = inside[1:]
            target[:, :rows.start], target[:, rows.stop:] = fill, fill
            target[:, :, :cols.start], target[:, :, cols.stop:] = fill, fill
            np.copyto(target[inside], x[cells])

    def merge(self, grids, out):
        """The adjoint of ``split`` for gradients: grids (phases, planes, Hq, Wq) -> out
        (planes, H, W), the cells no phase holds set to 0."""
        if not self.every_cell:
            out.fill(0)
        for source, (inside, cells) in zip(grids, self.cells):
            np.copyto(out[cells], source[inside])

