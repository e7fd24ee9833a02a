"""Runs one emulator case in its own process, for the sanitizer tests in test_emulator.py:

    python -m confnet.gpu.emu --sanitize asan -- python tests/gpu/emu_driver.py oob_write

A sanitizer build needs its runtime loaded before Python starts, and a finding ends the
process, so each case runs as a subprocess. Prints "driver: <case> finished" when it returns.
"""

import os
import sys

import numpy as np

from confnet.gpu.emu import EmuBackend

HERE = os.path.dirname(os.path.abspath(__file__))


def device(be, array):
    ptr = be.alloc(array.nbytes)
    be.htod(ptr, array)
    return ptr


def sgemm(be):
    """A correct kernel: the sanitizers must stay silent (no false reports from the fibers)."""
    m, n, k = 21, 19, 35
    g = np.random.default_rng(0)
    a, b = g.standard_normal((m, k), np.float32), g.standard_normal((k, n), np.float32)
    c = be.alloc(m * n * 4)
    kernel = be.function(os.path.join(HERE, "kernels", "emu_check.cu"), "sgemm_tiled")
    be.launch(kernel, (2, 2), (16, 16), [m, n, k, device(be, a), device(be, b), c])
    out = np.empty((m, n), np.float32)
    be.dtoh(out, c)
    assert np.allclose(out, a @ b, atol=1e-4), "sgemm_tiled differs from numpy"


def warp_ops(be):
    """Correct warp-synchronous kernels (shuffles, votes, WMMA): no false reports either."""
    check = os.path.join(HERE, "kernels", "emu_check.cu")
    n = 250
    x = device(be, np.random.default_rng(1).standard_normal(n).astype(np.float32))
    out = [be.alloc(6 * 4) for _ in range(4)]
    be.launch(be.function(check, "block_sum_shfl"), 3, 96, [n, x, out[0]], shared=12)
    be.launch(be.function(check, "votes_probe"), 3, 64, [150, x] + out)
    a = device(be, np.ones(16 * 16, np.float32))
    d = be.alloc(16 * 16 * 4)
    be.launch(be.function(check, "wmma_tf32_16x16x8"), 1, 32, [a, 16, a, 16, a, d])
    got = np.empty(256, np.float32)
    be.dtoh(got, d)
    assert (got == 9.0).all(), "wmma: 1 + sum of eight 1 * 1 is 9"


def missing_barrier(be):
    n = 100
    y = be.alloc(n * 4)
    kernel = be.function(os.path.join(HERE, "broken", "missing_barrier.cu"), "reverse_block")
    be.launch(kernel, 2, 64, [n, device(be, np.arange(n, dtype=np.float32)), y])


def oob_write(be):
    n = 100
    y = be.alloc(n * 4)
    kernel = be.function(os.path.join(HERE, "broken", "oob_write.cu"), "scale_off_by_one")
    be.launch(kernel, 2, 64, [n, np.float32(2), device(be, np.ones(n, np.float32)), y])


def misaligned_float4(be):
    n4 = 10
    x, y = device(be, np.zeros(4 * n4 + 4, np.float32)), be.alloc(16 * n4)
    kernel = be.function(os.path.join(HERE, "broken", "misaligned_float4.cu"), "copy4_at_offset")
    be.launch(kernel, 1, 32, [n4, 1, x, y])


if __name__ == "__main__":
    case = sys.argv[1]
    globals()[case](EmuBackend())          # order and sanitizer from the environment
    print(f"driver: {case} finished", flush=True)
