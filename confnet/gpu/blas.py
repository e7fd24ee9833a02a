"""Device math on float32 arrays addressed by device pointers (ints), on the backend in use.

The kernels live in ``cuda/math.cu`` (vector ops, reductions, per-channel bias) and
``cuda/gemm.cu`` (matrix products); this module is their launcher: it checks arguments, picks
the GEMM version and computes launch geometry. Every function enqueues work and returns; none
copies to or from the host (a reduction writes its scalar to a device pointer, the caller reads
it back only if it must).

Vector ops (``n`` elements, pointers to float32):

    fill(n, value, x)            x = value
    scale(n, alpha, x)           x = alpha x
    axpy(n, alpha, x, y)         y = alpha x + y
    axpby(n, alpha, x, beta, y)  y = alpha x + beta y   (beta = 0: y is not read)
    copy(n, x, y)                y = x
    add(n, a, b, y)              y = a + b
    mul(n, a, b, y)              y = a * b
    add_sign(n, alpha, x, y)     y = y + alpha sign(x)
    dot(n, x, y, out)            *out = sum x y
    sumsq(n, x, out)             *out = sum x^2
    asum(n, x, out)              *out = sum |x|

Reductions run in two passes with a fixed geometry and no atomics, so they are deterministic:
the same inputs give the same bits on every run.

Per-channel bias, y viewed as (outer, channels, inner):

    bias_forward(outer, channels, inner, bias, y)    y[o, c, i] += bias[c]
    bias_backward(outer, channels, inner, dy, db)    db[c] += sum_{o, i} dy[o, c, i]

Matrix products, row-major (numpy) convention:

    gemm(transa, transb, m, n, k, alpha, a, b, beta, c, bias=None, bias_per="row", relu=False)
        C[m, n] = relu?(alpha op(A)[m, k] @ op(B)[k, n] + beta C + bias)
        (beta = 0: C is not read; bias per row: bias[i] for row i, length m; per column:
        bias[j], length n; relu clamps negatives to 0 after the sum)
    gemv(trans, m, n, alpha, a, x, beta, y)
        y = alpha op(A) x + beta y, A stored (m, n)

``set_tf32(True)`` lets large products run on tensor cores in TF32 (inputs rounded to a 10-bit
mantissa, float32 accumulation: relative error about k 2^-11 instead of float32's); it is off by
default, so results match the CPU path within float32 tolerances. A GPU solver turns it on from
SolverParameter.allow_tf32 (``confnet train --no-tf32`` keeps it off).
"""

import numpy as np

from ..errors import ConfnetError
from .launch import THREADS_1D, blocks_for, launch, launch_1d

MATH = "math.cu"
GEMM = "gemm.cu"

# Pass 1 of a reduction runs at most this many blocks of THREADS_1D threads (each a grid-stride
# share of the input); pass 2 sums their partials in one block. 256 blocks keep an H200's SMs
# busy on large blobs while pass 2 stays a single short block.
REDUCE_BLOCKS = 256

# Tile sizes (rows, columns of C) and block sizes of the GEMM versions, as cuda/gemm.cu states
# them: v1 16x16 tiles, v2 64x64 register-blocked, v3 64x64 TF32 WMMA, v4 128x128 double-buffered,
# v5 32x64 double-buffered (skinny products).
_GEMM_TILES = {1: (16, 16, (16, 16)), 2: (64, 64, 256), 3: (64, 64, 128), 4: (128, 128, 256),
               5: (32, 64, 128)}
GEMM_VERSIONS = tuple(_GEMM_TILES)
TF32_VERSIONS = (3,)   # versions that round inputs to TF32

# The shape rule of choose_gemm aims at one full wave of blocks on the GPUs confnet targets: an
# H100 / H200 SXM has 132 SMs (an A100 108).
GEMM_SMS = 132
# Products of fewer flops than this gain nothing from TF32 (2 * 512^3 / 2: about 134 MFLOP, a
# few microseconds on tensor cores, as long as a launch).
TF32_MIN_FLOPS = 2 ** 27
_BIAS_MODES = {"row": 1, "col": 2}

_tf32 = False


def set_tf32(enabled):
    """Allow (True) or forbid (False, the default) TF32 tensor-core products in ``gemm``."""
    global _tf32
    _tf32 = bool(enabled)


def tf32_enabled():
    return _tf32


# -- vector ops ------------------------------------------------------------------------------------
def fill(n, value, x):
    _elementwise("blas_fill", n, np.float32(value), _ptr(x))


def scale(n, alpha, x):
    _elementwise("blas_scale", n, np.float32(alpha), _ptr(x))


def axpy(n, alpha, x, y):
    _elementwise("blas_axpy", n, np.float32(alpha), _ptr(x), _ptr(y))


def axpby(n, alpha, x, beta, y):
    _elementwise("blas_axpby", n, np.float32(alpha), _ptr(x), np.float32(beta), _ptr(y))


def copy(n, x, y):
    if _ptr(x) != _ptr(y):
        _elementwise("blas_copy", n, _ptr(x), _ptr(y))


def add(n, a, b, y):
    _elementwise("blas_add", n, _ptr(a), _ptr(b), _ptr(y))


def mul(n, a, b, y):
    _elementwise("blas_mul", n, _ptr(a), _ptr(b), _ptr(y))


def add_sign(n, alpha, x, y):
    _elementwise("blas_add_sign", n, np.float32(alpha), _ptr(x), _ptr(y))


def _elementwise(kernel, n, *args):
    launch_1d(MATH, kernel, _count(n), *args)


# -- reductions ------------------------------------------------------------------------------------
def dot(n, x, y, out):
    _reduce("blas_dot_partial", n, (_ptr(x), _ptr(y)), out)


def sumsq(n, x, out):
    _reduce("blas_sumsq_partial", n, (_ptr(x),), out)


def asum(n, x, out):
    _reduce("blas_asum_partial", n, (_ptr(x),), out)


def _reduce(kernel, n, inputs, out):
    """Pass 1: ``kernel`` writes one partial sum per block into a pooled scratch array; pass 2:
    one block adds them into ``*out``. The scratch goes back to the pool right away: later work
    on the same stream is ordered after pass 2, so reusing the block is safe."""
    from . import current
    n = _count(n)
    blocks = blocks_for(n, THREADS_1D, REDUCE_BLOCKS)
    backend = current()
    partial = backend.alloc(blocks * 4)
    try:
        launch(MATH, kernel, blocks, THREADS_1D, np.int32(n), *inputs, partial)
        launch(MATH, "blas_sum_final", 1, THREADS_1D, np.int32(blocks), partial, _ptr(out))
    finally:
        backend.free(partial)


# -- per-channel bias ------------------------------------------------------------------------------
def bias_forward(outer, channels, inner, bias, y):
    _elementwise("blas_bias_forward", outer * channels * inner, np.int32(channels),
                 np.int32(inner), _ptr(bias), _ptr(y))


def bias_backward(outer, channels, inner, dy, db):
    _count(outer * channels * inner)
    if channels > 0:
        launch(MATH, "blas_bias_backward", channels, THREADS_1D, np.int32(outer),
               np.int32(channels), np.int32(inner), _ptr(dy), _ptr(db))


# -- matrix products -------------------------------------------------------------------------------
def choose_gemm(m, n, k, batch=1):
    """The GEMM version for ``batch`` products of op(A)[m, k] @ op(B)[k, n], by shape:

    1. v1 (16x16 tiles) for thin or tiny products: min(m, n) < 16 (matrix-vector-like: wider
       tiles would be mostly empty), or fewer than GEMM_SMS / 4 blocks of v5's 32x64 tiles
       (v1 makes 8 times as many blocks, so a small product still spreads over the SMs).
    2. v3 (TF32 tensor cores) only when ``set_tf32(True)`` and the product is worth it: at least
       TF32_MIN_FLOPS (2 m n k batch) flops.
    3. v4 (128x128 tiles) when they fill the GPU: at least GEMM_SMS blocks, and at least 3/4
       of the tiles' area inside C (a 32-row convolution product would waste 3/4 of each).
    4. v5 (32x64 tiles) otherwise: skinny products (32..96 rows) and mid-sized ones, with 8
       times as many blocks as v4.
    """
    m, n, k, batch = (max(int(v), 1) for v in (m, n, k, batch))
    blocks5, _ = _tiling(m, n, batch, 5)
    if min(m, n) < 16 or blocks5 < GEMM_SMS // 4:
        return 1
    if _tf32 and 2 * m * n * k * batch >= TF32_MIN_FLOPS:
        return 3
    blocks4, used4 = _tiling(m, n, batch, 4)
    if blocks4 >= GEMM_SMS and used4 >= 0.75:
        return 4
    return 5


def _tiling(m, n, batch, version):
    """(blocks, fraction of the tiles' area inside C) of ``version`` on an m x n product."""
    tile_m, tile_n, _ = _GEMM_TILES[version]
    rows, cols = -(-m // tile_m), -(-n // tile_n)
    return rows * cols * batch, (m * n) / (rows * tile_m * cols * tile_n)


def gemm(transa, transb, m, n, k, alpha, a, b, beta, c, lda=None, ldb=None, ldc=None,
         batch=1, stride_a=0, stride_b=0, stride_c=0, version=None, bias=None, bias_per="row",
         relu=False):
    """C[m, n] = relu?(alpha op(A)[m, k] @ op(B)[k, n] + beta C + bias), row-major, on device
    pointers.

    A is stored (m, k), or (k, m) when ``transa``; B (k, n), or (n, k) when ``transb``; the
    leading dimensions (row lengths in memory) default to those shapes' last sizes. ``batch``
    products run in one launch, the i-th on a + i stride_a, b + i stride_b, c + i stride_c
    (strides in elements; 0 reuses one matrix for every product). beta = 0 writes C without
    reading it.

    The epilogue is fused into the product's store: ``bias`` (a device pointer, or None) is
    added per row (``bias_per="row"``: bias[i], m values, e.g. a convolution's output channels)
    or per column (``"col"``: bias[j], n values, e.g. InnerProduct's outputs), the same for
    every product of a batch; ``relu`` then sets negative results to 0 (NaN stays NaN).

    ``version`` forces a kernel version (GEMM_VERSIONS) instead of the shape-based choice
    (``choose_gemm``)."""
    m, n, k, batch = (_count(v) for v in (m, n, k, batch))
    if bias_per not in _BIAS_MODES:
        raise ConfnetError(f"gemm: bias_per {bias_per!r}: use 'row' (bias[i], m values) or "
                           "'col' (bias[j], n values)")
    bias_mode = 0 if bias is None else _BIAS_MODES[bias_per]
    lda = _leading("lda", lda, m if transa else k)
    ldb = _leading("ldb", ldb, k if transb else n)
    ldc = _leading("ldc", ldc, n)
    if m == 0 or n == 0 or batch == 0:
        return
    if version is None:
        version = choose_gemm(m, n, k, batch)
    if version not in _GEMM_TILES:
        raise ConfnetError(f"gemm version {version}: the versions are {GEMM_VERSIONS}")
    tile_m, tile_n, block = _GEMM_TILES[version]
    grid = ((n + tile_n - 1) // tile_n, (m + tile_m - 1) // tile_m, batch)
    if grid[1] > 65535 or batch > 65535:
        raise ConfnetError(f"gemm: {m} rows x batch {batch} exceed the grid limits of one launch")
    a, b, c = _ptr(a), _ptr(b), _ptr(c)
    args = [np.int32(bool(transa)), np.int32(bool(transb)), np.int32(m), np.int32(n),
            np.int32(k), np.float32(alpha), a, np.int32(lda), np.int32(stride_a), b,
            np.int32(ldb), np.int32(stride_b), np.float32(beta), c, np.int32(ldc),
            np.int32(stride_c)]
    if version > 1:
        # float4 loads need every group of 4 consecutive values 16-byte aligned: an aligned
        # base and row and batch strides that are multiples of 4 floats.
        args += [np.int32(_vector_ok(a, lda, stride_a)), np.int32(_vector_ok(b, ldb, stride_b))]
    args += [_ptr(bias or 0), np.int32(bias_mode), np.int32(bool(relu))]
    launch(GEMM, f"sgemm_v{version}", grid, block, *args)


def gemv(trans, m, n, alpha, a, x, beta, y, lda=None):
    """y = alpha op(A) x + beta y with A stored (m, n): op(A) = A (y has m values, x n) or A^T
    (``trans``: y has n values, x m). One column of a GEMM (v1, little waste for one column)."""
    rows, cols = (n, m) if trans else (m, n)
    lda = _leading("lda", lda, n)
    gemm(trans, False, rows, 1, cols, alpha, a, x, beta, y, lda=lda, ldb=1, ldc=1, version=1)


# -- argument checks -------------------------------------------------------------------------------
def _ptr(p):
    return int(p)


def _count(n):
    n = int(n)
    if not 0 <= n < 2 ** 31:
        raise ConfnetError(f"device math: size {n} is outside [0, 2^31)")
    return n


def _leading(name, value, minimum):
    if value is None:
        return max(minimum, 1)
    value = int(value)
    if value < max(minimum, 1):
        raise ConfnetError(f"gemm: {name} {value} is shorter than a row ({minimum})")
    return value


def _vector_ok(ptr, ld, stride):
    return ptr % 16 == 0 and ld % 4 == 0 and stride % 4 == 0
