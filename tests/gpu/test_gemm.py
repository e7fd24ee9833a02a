"""SGEMM versions (cuda/gemm.cu through blas.gemm) against numpy float64, row-major convention.

Every version (v1..v5) runs every case: the four transpose combinations; odd shapes that are not
multiples of any tile (1x1x1, 7x13x5, a single row, a single column, k = 1, k not a multiple of
the 8- or 16-deep steps, 129x131x17 spanning several 128x128 tiles); alpha and beta (beta = 0 on
a NaN-filled C must not read C); padded leading dimensions of A, B and C (the padding of C must
stay untouched); pointers that are not 16-byte aligned (the float4 path must fall back); batched
products with strides, a shared operand (stride 0) and gaps between matrices; and the fused
epilogue (bias per row, per column, ReLU). On the emulator in all three thread orders; on GPU 0
under ``gpu``.

TF32 versions (v3) are checked twice: on inputs already rounded to TF32, where their products are
exact and only float32 accumulation differs from numpy (float32 tolerance), and on raw inputs at
the tolerance that follows from TF32's 10-bit mantissa.
"""

import itertools

import numpy as np
import pytest

from confnet.gpu import blas
from tests.gpu.test_blas import dev  # noqa: F401  (the device fixture)

RNG = np.random.default_rng(11)
VERSIONS = [1, 2, 3, 4, 5]
TF32_VERSIONS = [3]
SHAPES = [(1, 1, 1), (7, 13, 5), (37, 53, 29), (1, 45, 33), (41, 1, 19), (5, 7, 1),
          (70, 68, 36), (129, 131, 17)]
SCALARS = [(1.0, 0.0), (0.5, -1.5)]
TRANSPOSES = list(itertools.product((False, True), repeat=2))
F32_EPS = 2.0 ** -23
# TF32 keeps 10 of float32's 23 mantissa bits: rounding an input to nearest costs at most 2^-11
# relative, so a product of two rounded inputs is within 2 * 2^-11 (+ 2^-22) of the exact one.
# Summed over k terms that is at most 2^-10 of sum |a| |b| (k 2^-11 relative for k terms of one
# sign when both inputs round the same way), on top of float32's accumulation error.
TF32_PRODUCT = 2.0 ** -10 + 2.0 ** -22


def tf32(x):
    """Round float32 values to TF32 (10 mantissa bits), to nearest with ties away from zero, as
    cvt.rna.tf32.f32 does."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def operands(m, n, k, ta, tb, round_tf32=False, pad=0):
    """Stored A, B (with ``pad`` extra columns per row), C, and op(A), op(B) as float64."""
    a = RNG.normal(size=((k, m + pad) if ta else (m, k + pad))).astype(np.float32)
    b = RNG.normal(size=((n, k + pad) if tb else (k, n + pad))).astype(np.float32)
    if round_tf32:
        a, b = tf32(a), tf32(b)
    c = RNG.normal(size=(m, n)).astype(np.float32)
    op_a = (a[:, :m].T if ta else a[:, :k]).astype(np.float64)
    op_b = (b[:, :k].T if tb else b[:, :n]).astype(np.float64)
    return a, b, c, op_a, op_b


def expected(alpha, op_a, op_b, beta, c, bias_row=None, bias_col=None, relu=False):
    """The float64 result and the scale of its rounding error (sum of the magnitudes added)."""
    want = alpha * op_a @ op_b + beta * c
    scale = abs(alpha) * np.abs(op_a) @ np.abs(op_b) + abs(beta) * np.abs(c)
    for bias, axis in ((bias_row, 1), (bias_col, 0)):
        if bias is not None:
            bias = np.expand_dims(bias.astype(np.float64), axis)
            want, scale = want + bias, scale + np.abs(bias)
    return (np.maximum(want, 0) if relu else want), scale


def assert_gemm(got, alpha, op_a, op_b, beta, c, product_eps=0.0, **epilogue):
    """|got - want| within float32's accumulation error (k + 2 roundings of the magnitudes
    summed, doubled) plus ``product_eps`` of them (TF32 inputs). ReLU moves no value further
    from another, so the same bound holds after it."""
    want, scale = expected(alpha, op_a, op_b, beta, c, **epilogue)
    k = op_a.shape[1]
    bound = (2 * (k + 2) * F32_EPS + product_eps) * scale + 1e-6
    assert not np.isnan(got).any()
    np.testing.assert_array_less(np.abs(got - want), bound)


def run_gemm(target, version, ta, tb, m, n, k, alpha, beta, a, b, c, offset=0, lda=None,
             ldb=None, **kwargs):
    pc = target.put(c) if beta else target.empty(c.size)   # beta = 0: NaN must not leak
    blas.gemm(ta, tb, m, n, k, alpha, target.put(a, offset), target.put(b, offset), beta, pc,
              lda=lda, ldb=ldb, version=version, **kwargs)
    return target.get(pc, (m, n))


@pytest.mark.parametrize("version", VERSIONS)
def test_shapes_transposes_and_scalars(dev, version):   # noqa: F811
    for (m, n, k), (ta, tb), (alpha, beta) in itertools.product(SHAPES, TRANSPOSES, SCALARS):
        a, b, c, op_a, op_b = operands(m, n, k, ta, tb, round_tf32=version in TF32_VERSIONS)
        got = run_gemm(dev, version, ta, tb, m, n, k, alpha, beta, a, b, c)
        assert_gemm(got, alpha, op_a, op_b, beta, c)


@pytest.mark.parametrize("version", TF32_VERSIONS)
def test_tf32_on_raw_inputs(dev, version):   # noqa: F811
    for (ta, tb), (alpha, beta) in itertools.product(TRANSPOSES, SCALARS):
        m, n, k = 70, 37, 45
        a, b, c, op_a, op_b = operands(m, n, k, ta, tb)
        got = run_gemm(dev, version, ta, tb, m, n, k, alpha, beta, a, b, c)
        assert_gemm(got, alpha, op_a, op_b, beta, c, product_eps=TF32_PRODUCT)
        assert np.abs(got - (alpha * op_a @ op_b + beta * c)).max() > 1e-5   # it did round


@pytest.mark.parametrize("version", VERSIONS)
def test_padded_rows_and_unaligned_pointers(dev, version):   # noqa: F811
    """Leading dimensions longer than the rows: pad 4 keeps float4 loads (rows stay 16-byte
    multiples), pad 3 and pointers one float past an aligned address make them step aside. C's
    rows are padded too, and the padding keeps its values."""
    m, n, k = 68, 72, 40
    for (ta, tb), (pad, offset) in itertools.product(TRANSPOSES, ((4, 0), (3, 0), (0, 1))):
        a, b, c, op_a, op_b = operands(m, n, k, ta, tb, round_tf32=version in TF32_VERSIONS,
                                       pad=pad)
        c_stored = RNG.normal(size=(m, n + pad + 1)).astype(np.float32)
        c = c_stored[:, :n]
        pc = dev.put(c_stored, offset)
        blas.gemm(ta, tb, m, n, k, 1.0, dev.put(a, offset), dev.put(b, offset), 0.5, pc,
                  lda=a.shape[1], ldb=b.shape[1], ldc=c_stored.shape[1], version=version)
        got = dev.get(pc, c_stored.shape)
        assert_gemm(got[:, :n], 1.0, op_a, op_b, 0.5, c)
        np.testing.assert_array_equal(got[:, n:], c_stored[:, n:])


@pytest.mark.parametrize("version", VERSIONS)
def test_batched_with_strides(dev, version):   # noqa: F811
    """3 products in one launch: C_i = W @ X_i with W shared (stride 0), as Convolution runs,
    and C_i = A_i^T @ B with B shared, matrices spaced with gaps (strides beyond their size)."""
    batch, m, n, k = 3, 19, 33, 27
    rnd = tf32 if version in TF32_VERSIONS else np.asarray
    w = rnd(RNG.normal(size=(m, k)).astype(np.float32))
    x = rnd(RNG.normal(size=(batch, k, n)).astype(np.float32))
    pc = dev.empty(batch * m * n)
    blas.gemm(False, False, m, n, k, 1.0, dev.put(w), dev.put(x), 0.0, pc, batch=batch,
              stride_a=0, stride_b=k * n, stride_c=m * n, version=version)
    got = dev.get(pc, (batch, m, n))
    for i in range(batch):
        assert_gemm(got[i], 1.0, w.astype(np.float64), x[i].astype(np.float64), 0.0,
                    np.zeros((m, n)))

    gap_a, gap_c = 5, 7
    a = rnd(RNG.normal(size=(batch, k * m + gap_a)).astype(np.float32))
    b = rnd(RNG.normal(size=(k, n)).astype(np.float32))
    c = RNG.normal(size=(batch, m * n + gap_c)).astype(np.float32)
    pc = dev.put(c)
    blas.gemm(True, False, m, n, k, -1.0, dev.put(a), dev.put(b), 2.0, pc, batch=batch,
              stride_a=a.shape[1], stride_b=0, stride_c=c.shape[1], version=version)
    got = dev.get(pc, c.shape)
    for i in range(batch):
        op_a = a[i, :k * m].reshape(k, m).T.astype(np.float64)
        assert_gemm(got[i, :m * n].reshape(m, n), -1.0, op_a, b.astype(np.float64), 2.0,
                    c[i, :m * n].reshape(m, n))
        np.testing.assert_array_equal(got[i, m * n:], c[i, m * n:])   # the gaps stay


EPILOGUES = [dict(bias_per="row"), dict(bias_per="col"), dict(relu=True),
             dict(bias_per="row", relu=True), dict(bias_per="col", relu=True)]


@pytest.mark.parametrize("version", VERSIONS)
def test_fused_bias_and_relu(dev, version):   # noqa: F811
    """C = relu?(alpha op(A) op(B) + beta C + bias) with bias per row (m values) or per column
    (n values), with beta 0 on a NaN-filled C and beta != 0, in a batch sharing the bias."""
    for (m, n, k), epilogue, (ta, tb), (alpha, beta) in itertools.product(
            [(37, 70, 21), (129, 131, 17)], EPILOGUES, [(False, False), (True, True)], SCALARS):
        a, b, c, op_a, op_b = operands(m, n, k, ta, tb, round_tf32=version in TF32_VERSIONS)
        kwargs, want = {"relu": epilogue.get("relu", False)}, {}
        if "bias_per" in epilogue:
            bias = RNG.normal(size=m if epilogue["bias_per"] == "row" else n).astype(np.float32)
            kwargs.update(bias=dev.put(bias), bias_per=epilogue["bias_per"])
            want["bias_row" if epilogue["bias_per"] == "row" else "bias_col"] = bias
        got = run_gemm(dev, version, ta, tb, m, n, k, alpha, beta, a, b, c, **kwargs)
        assert_gemm(got, alpha, op_a, op_b, beta, c, relu=kwargs["relu"], **want)
        if kwargs["relu"]:
            assert (got == 0).any() and (got > 0).any()


@pytest.mark.parametrize("version", VERSIONS)
def test_fused_epilogue_in_a_batch_and_nan_through_relu(dev, version):   # noqa: F811
    """Two products share one per-row bias; a NaN in A stays NaN in its row after the ReLU."""
    batch, m, n, k = 2, 9, 21, 6
    a = RNG.normal(size=(batch, m, k)).astype(np.float32)
    a[1, 4, 2] = np.nan
    b = RNG.normal(size=(k, n)).astype(np.float32)
    bias = RNG.normal(size=m).astype(np.float32)
    pc = dev.empty(batch * m * n)
    blas.gemm(False, False, m, n, k, 1.0, dev.put(a), dev.put(b), 0.0, pc, batch=batch,
              stride_a=m * k, stride_c=m * n, version=version, bias=dev.put(bias), relu=True)
    got = dev.get(pc, (batch, m, n))
    assert np.isnan(got[1, 4]).all()
    tol = 1e-2 if version in TF32_VERSIONS else 1e-5
    for i in range(batch):
        rows = np.arange(m) != 4 if i == 1 else slice(None)
        want = np.maximum(a[i].astype(np.float64) @ b.astype(np.float64) + bias[:, None], 0)
        np.testing.assert_allclose(got[i][rows], want[rows], rtol=tol, atol=tol)


def test_shape_based_choice_runs_every_shape(dev):   # noqa: F811
    """blas.gemm without a version: the shape rule's pick, with the TF32 switch off and on."""
    for tf32_on in (False, True):
        blas.set_tf32(tf32_on)
        try:
            m, n, k = 130, 70, 20
            a, b, c, op_a, op_b = operands(m, n, k, False, True, round_tf32=True)
            pc = dev.put(c)
            blas.gemm(False, True, m, n, k, 1.0, dev.put(a), dev.put(b), 1.0, pc)
            assert_gemm(dev.get(pc, (m, n)), 1.0, op_a, op_b, 1.0, c)
        finally:
            blas.set_tf32(False)


def test_benchmark_script_runs_on_the_emulator():
    """tools/bench_gemm.py --gpu emu: every version checked on its tiny shapes, a table out."""
    import os
    import subprocess
    import sys
    from tests.layers.harness import device_backend
    device_backend("emu")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, os.path.join(root, "tools", "bench_gemm.py"),
                           "--gpu", "emu", "--seconds", "0.001"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WRONG" not in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("square 130")]
    assert [row.split()[7] for row in rows] == ["v1", "v2", "v3", "v4", "v5", "v1*"]
