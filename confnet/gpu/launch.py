"""Launch geometry, in one place (kernels in ``cuda/*.cu`` never pick their own).

Two shapes of launch cover confnet's kernels:

- ``launch_1d(kernel, n, *args)``: one logical thread per element, for elementwise kernels
  written as grid-stride loops over ``n`` (``for (int i = blockIdx.x * blockDim.x + threadIdx.x;
  i < n; i += blockDim.x * gridDim.x)``). 256 threads a block: a multiple of the warp size that
  leaves room for 8 resident blocks per SM on every architecture since sm_80. The grid is capped
  at 4096 blocks (about 30 blocks per SM on an H200's 132 SMs): enough to hide latency, and the
  grid-stride loop covers the rest, so huge blobs never exceed the grid limit.
- ``launch_rows(kernel, rows, *args)``: one block of 256 threads per row (a channel, a sample)
  for kernels that reduce along a row with a block reduction, written as block-stride loops over
  ``rows`` (``for (int r = blockIdx.x; r < rows; r += gridDim.x)``); at most 4096 blocks.
- ``launch(kernel, grid, block, *args, shared=0)``: explicit geometry for kernels that tile
  (GEMM, reductions), where the layer's launcher computes grid and block from the tile sizes the
  kernel's comments state.
"""

import numpy as np

from . import current

THREADS_1D = 256
MAX_BLOCKS_1D = 4096


def blocks_for(n, threads=THREADS_1D, cap=MAX_BLOCKS_1D):
    """Blocks of ``threads`` needed to cover ``n`` elements, at least 1, at most ``cap``."""
    return max(1, min((int(n) + threads - 1) // threads, cap))


def launch(cu_file, name, grid, block, *args, shared=0):
    backend = current()
    kernel = backend.function(cu_file, name)
    backend.launch(kernel, _dim3(grid), _dim3(block), args, shared)


def launch_1d(cu_file, name, n, *args):
    """``name(n, *args)`` over ``n`` elements with the grid-stride geometry above."""
    if n <= 0:
        return
    launch(cu_file, name, blocks_for(n), THREADS_1D, np.int32(n), *args)


def launch_rows(cu_file, name, rows, *args):
    """``name(*args)`` with one block of THREADS_1D threads per row (see the module docstring)."""
    if rows <= 0:
        return
    launch(cu_file, name, blocks_for(rows, 1), THREADS_1D, *args)


def _dim3(d):
    if isinstance(d, (int, np.integer)):
        return (int(d), 1, 1)
    d = tuple(int(x) for x in d)
    return d + (1,) * (3 - len(d))
