"""The CUDA-on-CPU emulator (confnet/gpu/emu.py): device vocabulary, thread orders, deadlock
detection, NaN-poisoned dynamic shared memory, and the sanitizer builds catching planted bugs.

Kernels live in tests/gpu/kernels/ (correct ones) and tests/gpu/broken/ (one planted bug each).
Shapes are small and not multiples of the block size; each .cu compiles once (the emulator's
build cache), so reruns are fast.
"""

import os
import shutil

import numpy as np
import pytest

from confnet.errors import ConfnetError

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "kernels", "emu_check.cu")
ORDERS = ("forward", "reverse", "random")

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="the CUDA emulator needs g++ (C++20); none on PATH")


@pytest.fixture(scope="module")
def backends():
    """One emulator backend per thread order (kernels compile once, through the cache)."""
    from confnet.gpu.emu import EmuBackend
    return {order: EmuBackend(order=order, seed=7) for order in ORDERS}


def to_device(be, array):
    ptr = be.alloc(array.nbytes)
    be.htod(ptr, np.ascontiguousarray(array))
    return ptr


def from_device(be, ptr, shape, dtype=np.float32):
    out = np.empty(shape, dtype)
    be.dtoh(out, ptr)
    return out


def sgemm(be, a, b):
    m, k = a.shape
    n = b.shape[1]
    pa, pb, pc = to_device(be, a), to_device(be, b), be.alloc(m * n * 4)
    kernel = be.function(CHECK, "sgemm_tiled")
    be.launch(kernel, ((n + 15) // 16, (m + 15) // 16), (16, 16), [m, n, k, pa, pb, pc])
    return from_device(be, pc, (m, n))


@pytest.mark.parametrize("order", ORDERS)
def test_tiled_sgemm_with_shared_memory_and_barriers(backends, order):
    g = np.random.default_rng(0)
    a = g.standard_normal((37, 45)).astype(np.float32)
    b = g.standard_normal((45, 29)).astype(np.float32)
    np.testing.assert_allclose(sgemm(backends[order], a, b), a @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", ORDERS)
def test_warp_shuffle_block_sum(backends, order):
    be = backends[order]
    n, threads = 250, 96
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    blocks = (n + threads - 1) // threads
    out = be.alloc(blocks * 4)
    be.launch(be.function(CHECK, "block_sum_shfl"), blocks, threads, [n, to_device(be, x), out],
              shared=threads // 32 * 4)
    expect = np.add.reduceat(x, np.arange(0, n, threads))
    np.testing.assert_allclose(from_device(be, out, blocks), expect, rtol=1e-5, atol=1e-5)


def test_dynamic_shared_memory_starts_as_nan(backends):
    be = backends["forward"]
    out = be.alloc(2 * 10 * 4)
    be.launch(be.function(CHECK, "dynamic_shared_probe"), 2, 10, [out], shared=40)
    got = from_device(be, out, (2, 10))
    assert np.isnan(got[:, 1::2]).all()
    np.testing.assert_array_equal(got[:, 0::2], [[0, 2, 4, 6, 8]] * 2)


@pytest.mark.parametrize("order", ORDERS)
def test_barrier_in_divergent_branch_is_a_deadlock(backends, order):
    from confnet.gpu.emu import EmuKernelError
    be = backends[order]
    kernel = be.function(CHECK, "divergent_barrier")
    x = to_device(be, np.ones(128, np.float32))
    with pytest.raises(EmuKernelError) as info:
        be.launch(kernel, 2, 64, [100, x])
    message = str(info.value)
    assert "kernel divergent_barrier, block (1,0,0)" in message
    assert "threads [0-35] wait at __syncthreads (" in message
    assert "emu_check.cu:" in message and "threads [36-63] exited" in message
    assert isinstance(info.value, ConfnetError)
    be.launch(kernel, 2, 64, [128, x])            # every thread reaches it: fine, and no leftovers
    np.testing.assert_array_equal(from_device(be, x, 128), np.r_[[4.0] * 100, [2.0] * 28])
