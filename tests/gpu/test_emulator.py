"""The CUDA-on-CPU emulator (confnet/gpu/emu.py): device vocabulary, thread orders, deadlock
detection, NaN-poisoned dynamic shared memory, and the sanitizer builds catching planted bugs.

Kernels live in tests/gpu/kernels/ (correct ones) and tests/gpu/broken/ (one planted bug each).
Shapes are small and not multiples of the block size; each .cu compiles once (the emulator's
build cache), so reruns are fast.
"""

import os
import re
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


def test_atomics(backends):
    be = backends["random"]
    n = 1000
    g = np.random.default_rng(2)
    label = g.integers(0, 10, n).astype(np.int32)
    x = g.standard_normal(n).astype(np.float32)
    hist, total, top, count, xmax = (be.alloc(40), be.alloc(4), be.alloc(4), be.alloc(8),
                                     be.alloc(4))
    for ptr, words in ((hist, 10), (total, 1), (top, 1), (count, 2)):
        be.memset_d32(ptr, 0, words)
    be.memset_d32(xmax, np.float32(-np.inf).view(np.uint32), 1)
    be.launch(be.function(CHECK, "atomics_probe"), 3, 128,
              [n, to_device(be, label), to_device(be, x), hist, total, top, count, xmax])
    np.testing.assert_array_equal(from_device(be, hist, 10, np.int32), np.bincount(label, None, 10))
    np.testing.assert_allclose(from_device(be, total, 1), x.sum(dtype=np.float64), rtol=1e-4)
    assert from_device(be, top, 1, np.int32)[0] == label.max()
    assert from_device(be, count, 1, np.uint64)[0] == n
    assert from_device(be, xmax, 1)[0] == x.max()


@pytest.mark.parametrize("order", ORDERS)
def test_warp_votes_and_barrier_count(backends, order):
    be = backends[order]
    n, threads, blocks = 150, 64, 3
    x = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    ballot, any_, all_, count = (be.alloc(6 * 4) for _ in range(4))
    be.launch(be.function(CHECK, "votes_probe"), blocks, threads,
              [n, to_device(be, x), ballot, any_, all_, count])
    pred = np.zeros(blocks * threads, bool)
    pred[:n] = x > 0
    lanes = pred.reshape(6, 32)
    expect = (lanes * (1 << np.arange(32, dtype=np.uint64))).sum(1)
    np.testing.assert_array_equal(from_device(be, ballot, 6, np.uint32), expect)
    np.testing.assert_array_equal(from_device(be, any_, 6, np.int32), lanes.any(1))
    np.testing.assert_array_equal(from_device(be, all_, 6, np.int32), lanes.all(1))
    np.testing.assert_array_equal(from_device(be, count, 3, np.int32),
                                  pred.reshape(3, 64).sum(1))


def tf32(a):
    """Round float32 to TF32 (10 mantissa bits), to nearest, ties away from zero."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


@pytest.mark.parametrize("order", ORDERS)
def test_wmma_tf32_matches_numpy_on_rounded_inputs(backends, order):
    be = backends[order]
    g = np.random.default_rng(4)
    lda, ldb = 11, 9                       # padded leading dimensions
    a = g.standard_normal((16, lda)).astype(np.float32)        # row-major 16 x 8 in 16 x 11
    b = g.standard_normal((16, ldb)).astype(np.float32)        # column-major 8 x 16: b[n, k]
    c = g.standard_normal((16, 16)).astype(np.float32)
    d = be.alloc(16 * 16 * 4)
    be.launch(be.function(CHECK, "wmma_tf32_16x16x8"), 1, 32,
              [to_device(be, a), lda, to_device(be, b), ldb, to_device(be, c), d])
    got = from_device(be, d, (16, 16)).T                       # stored column-major
    am, bm = tf32(a[:, :8]).astype(np.float64), tf32(b[:, :8]).T.astype(np.float64)
    expect = am @ bm + c
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    # Without the TF32 rounding the error would be ~1e-3: the rounding is really applied.
    assert np.abs(a[:, :8].astype(np.float64) @ b[:, :8].T + c - expect).max() > 1e-4


def test_wmma_element_order_is_not_a_contract(backends):
    """A kernel that reads fragment elements by position gets different data per order."""
    a = np.arange(128, dtype=np.float32)
    seen = []
    for order in ("forward", "reverse"):
        be = backends[order]
        out = be.alloc(32 * 4)
        be.launch(be.function(CHECK, "wmma_depends_on_layout"), 1, 32, [to_device(be, a), out])
        seen.append(from_device(be, out, 32))
    assert not np.array_equal(seen[0], seen[1])


def test_missing_barrier_changes_result_with_thread_order(backends):
    n = 100
    x = np.arange(n, dtype=np.float32)
    results = {}
    for order, be in backends.items():
        y = be.alloc(n * 4)
        be.launch(be.function(os.path.join(HERE, "broken", "missing_barrier.cu"),
                              "reverse_block"), 2, 64, [n, to_device(be, x), y])
        results[order] = from_device(be, y, n)
    assert not np.array_equal(results["forward"], results["reverse"])
    correct = np.r_[x[:64][::-1], np.r_[x[64:], np.zeros(28, np.float32)][::-1][:36]]
    assert any(not np.array_equal(r, correct) for r in results.values())


@pytest.mark.parametrize("mode,message", [(0, "__trap() called"),
                                          (1, "invalid memory access (SIGSEGV)"),
                                          (2, "arithmetic fault, e.g. integer division by zero")])
def test_runtime_errors_name_block_and_thread(backends, mode, message):
    from confnet.gpu.emu import EmuKernelError
    be = backends["forward"]
    kernel = be.function(CHECK, "fault_probe")
    words = be.alloc(16)
    be.memset_d32(words, 0, 4)
    where = "kernel fault_probe, block (1,0,0), thread (30,0,0): "
    with pytest.raises(EmuKernelError, match=re.escape(where + message)):
        be.launch(kernel, 3, 40, [70, mode, words])
    be.launch(kernel, 3, 40, [1000, mode, words])          # the backend still works


def test_launch_argument_checks(backends):
    be = backends["forward"]
    kernel = be.function(CHECK, "fault_probe")
    with pytest.raises(ConfnetError, match="takes 3 arguments, got 2"):
        be.launch(kernel, 1, 32, [1, 2])
    with pytest.raises(ConfnetError, match="1 to 1024"):
        be.launch(kernel, 1, (64, 32), [0, 0, 0])
    with pytest.raises(ConfnetError, match="sgemm_v9 not found"):
        be.function(CHECK, "sgemm_v9")


def test_order_from_environment(monkeypatch):
    from confnet.gpu.emu import EmuBackend
    monkeypatch.setenv("CONFNET_EMU_ORDER", "reverse")
    assert EmuBackend().order == "reverse"
    monkeypatch.setenv("CONFNET_EMU_ORDER", "sideways")
    with pytest.raises(ConfnetError, match="forward, reverse, random"):
        EmuBackend()


def test_build_cache_is_safe_under_concurrent_builds(tmp_path, monkeypatch):
    """Two builds of one file at once both succeed and leave one library, no temporaries."""
    import threading

    from confnet.gpu.emu import build
    monkeypatch.setenv("CONFNET_EMU_CACHE", str(tmp_path / "cache"))
    cu = tmp_path / "tiny.cu"
    cu.write_text('extern "C" __global__ void twice(int n, float* x) {\n'
                  '    int i = blockIdx.x * blockDim.x + threadIdx.x;\n'
                  '    if (i < n) x[i] *= 2.0f;\n}\n')
    results = []
    threads = [threading.Thread(target=lambda: results.append(build(str(cu))))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert os.listdir(tmp_path / "cache") == [os.path.basename(results[0][0])]
    cu.write_text(cu.read_text().replace("2.0f", "3.0f"))     # a new source, a new library
    assert build(str(cu))[0] != results[0][0]


# ---- sanitizer builds: each case runs tests/gpu/emu_driver.py in a subprocess ----------------
def run_driver(kind, case):
    """Run one driver case under the sanitizer ``kind``; returns (exit code, stdout + stderr)."""
    import subprocess
    import sys

    from confnet.gpu.emu import sanitizer_env
    try:
        env = sanitizer_env(kind)
    except ConfnetError as e:
        pytest.skip(str(e))
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(HERE))] + env.get("PYTHONPATH", "").split(os.pathsep))
    done = subprocess.run([sys.executable, os.path.join(HERE, "emu_driver.py"), case], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.sanitizer
@pytest.mark.parametrize("kind", ["asan", "tsan"])
@pytest.mark.parametrize("case", ["sgemm", "warp_ops"])
def test_sanitizers_stay_silent_on_correct_kernels(kind, case):
    """Fiber stack switches and barriers are announced to the sanitizers: no false reports."""
    rc, out = run_driver(kind, case)
    assert rc == 0 and f"driver: {case} finished" in out, out[-3000:]
    assert "Sanitizer" not in out and "runtime error" not in out, out[-3000:]


@pytest.mark.sanitizer
def test_asan_names_out_of_bounds_write_with_block_and_thread():
    rc, out = run_driver("asan", "oob_write")
    assert rc != 0 and "driver: oob_write finished" not in out
    assert "AddressSanitizer: heap-buffer-overflow" in out, out[-3000:]
    assert "WRITE of size 4" in out and "oob_write.cu:5" in out
    # Thread 36 of block 1 is i = 100 = n: one float past the end of y.
    assert ("confnet emu: the error above happened in kernel scale_off_by_one, block (1,0,0), "
            "thread (36,0,0)") in out


@pytest.mark.sanitizer
def test_ubsan_names_misaligned_float4_load_with_block_and_thread():
    rc, out = run_driver("asan", "misaligned_float4")
    assert rc != 0 and "driver: misaligned_float4 finished" not in out
    assert "misaligned address" in out and "requires 16 byte alignment" in out, out[-3000:]
    assert "misaligned_float4.cu:7" in out
    assert ("confnet emu: the error above happened in kernel copy4_at_offset, block (0,0,0), "
            "thread (0,0,0)") in out


@pytest.mark.sanitizer
def test_tsan_reports_the_race_of_a_missing_barrier():
    rc, out = run_driver("tsan", "missing_barrier")
    assert rc != 0 and "driver: missing_barrier finished" not in out
    assert "ThreadSanitizer: data race" in out, out[-3000:]
    assert "missing_barrier.cu:" in out and "reverse_block::tile" in out
    assert "'reverse_block block (0,0,0) thread (" in out          # the fibers' names
    assert "confnet emu: the error above happened in kernel reverse_block, block (0,0,0)" in out


def test_sanitizer_build_refuses_without_its_runtime():
    from confnet.gpu.emu import EmuBackend
    with open("/proc/self/maps") as maps:
        preloaded = "libasan" in maps.read()
    if preloaded:
        pytest.skip("this process already runs under ASan")
    with pytest.raises(ConfnetError, match="python -m confnet.gpu.emu --sanitize asan"):
        EmuBackend(sanitize="asan")


def test_math_vocabulary(backends):
    be = backends["forward"]
    n4 = 13
    x = np.random.default_rng(5).uniform(-2, 2, (n4, 4)).astype(np.float32)
    y = be.alloc(n4 * 12 * 4)
    be.launch(be.function(CHECK, "math_probe"), 1, 32, [n4, to_device(be, x), y])
    got = from_device(be, y, (n4, 12))
    a, b, c, d = x.T.astype(np.float64)
    expect = np.stack([np.exp(a), np.exp(b), np.log(abs(c) + 1), np.log(abs(d) + 1), a / 3,
                       1 / np.sqrt(abs(b) + 1), np.maximum(c, d), np.tanh(a), np.clip(a, 0, 1),
                       b * c + d, d, np.zeros_like(a)], 1)
    np.testing.assert_allclose(got, expect, rtol=2e-6, atol=1e-6)


def test_warp_op_not_reached_by_every_lane_is_a_deadlock(backends):
    from confnet.gpu.emu import EmuKernelError
    be = backends["reverse"]
    x = to_device(be, np.zeros(40, np.float32))
    with pytest.raises(EmuKernelError, match=r"block \(0,0,0\): deadlock: .*threads \[0-15\] "
                                             r"wait at __shfl\*_sync mask 0xffffffff \(.*"
                                             r"emu_check.cu:\d+\); threads \[16-39\] exited"):
        be.launch(be.function(CHECK, "divergent_shuffle"), 1, 40, [x])
