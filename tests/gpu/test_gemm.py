"""SGEMM versions (cuda/gemm.cu through blas.gemm) against numpy, row-major convention.

Every version runs every case: the four transpose combinations, odd shapes (not multiples of any
tile: 37x53x29, a single row, a single column, k = 1, shapes spanning several tiles), alpha and
beta (beta = 0 on a NaN-filled C must not read C), padded leading dimensions, pointers that are
not 16-byte aligned (the float4 path must fall back), and batched products with a shared
operand (stride 0). On the emulator in all three thread orders; on GPU 0 under ``gpu``.

v3 (TF32 WMMA) is checked twice: on inputs already rounded to TF32, where its products are
exact and only float32 accumulation differs from numpy, and on raw inputs at a TF32 tolerance.
"""

import itertools

import numpy as np
import pytest

from confnet.gpu import blas
from tests.gpu.test_blas import dev  # noqa: F401  (the device fixture)

RNG = np.random.default_rng(11)
SHAPES = [(37, 53, 29), (1, 45, 33), (41, 1, 19), (5, 7, 1), (70, 68, 36)]
SCALARS = [(1.0, 0.0), (0.5, -1.5)]
TRANSPOSES = list(itertools.product((False, True), repeat=2))
F32_EPS, TF32_EPS = 2.0 ** -23, 2.0 ** -10


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


def assert_gemm(got, alpha, op_a, op_b, beta, c, eps):
    """|got - want| within a few eps of the magnitudes summed (k terms, a rounding each)."""
    want = alpha * op_a @ op_b + beta * c
    scale = abs(alpha) * np.abs(op_a) @ np.abs(op_b) + abs(beta) * np.abs(c)
    k = op_a.shape[1]
    np.testing.assert_array_less(np.abs(got - want), 2 * (k + 2) * eps * scale + 1e-6)


def run_gemm(target, version, ta, tb, m, n, k, alpha, beta, a, b, c, offset=0, lda=None,
             ldb=None):
    pc = target.put(c) if beta else target.empty(c.size)   # beta = 0: NaN must not leak
    blas.gemm(ta, tb, m, n, k, alpha, target.put(a, offset), target.put(b, offset), beta, pc,
              lda=lda, ldb=ldb, version=version)
    return target.get(pc, (m, n))


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_shapes_transposes_and_scalars(dev, version):   # noqa: F811
    for (m, n, k), (ta, tb), (alpha, beta) in itertools.product(SHAPES, TRANSPOSES, SCALARS):
        a, b, c, op_a, op_b = operands(m, n, k, ta, tb, round_tf32=version == 3)
        got = run_gemm(dev, version, ta, tb, m, n, k, alpha, beta, a, b, c)
        assert_gemm(got, alpha, op_a, op_b, beta, c, F32_EPS)


def test_tf32_on_raw_inputs(dev):   # noqa: F811
    for (ta, tb), (alpha, beta) in itertools.product(TRANSPOSES, SCALARS):
        m, n, k = 70, 37, 45
        a, b, c, op_a, op_b = operands(m, n, k, ta, tb)
        got = run_gemm(dev, 3, ta, tb, m, n, k, alpha, beta, a, b, c)
        assert_gemm(got, alpha, op_a, op_b, beta, c, TF32_EPS)
        assert np.abs(got - (alpha * op_a @ op_b + beta * c)).max() > 0   # it did round


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_padded_rows_and_unaligned_pointers(dev, version):   # noqa: F811
    """Leading dimensions longer than the rows: pad 4 keeps float4 loads (rows stay 16-byte
    multiples), pad 3 and pointers one float past an aligned address make them step aside."""
    m, n, k = 68, 72, 40
    for (ta, tb), (pad, offset) in itertools.product(TRANSPOSES, ((4, 0), (3, 0), (0, 1))):
        a, b, c, op_a, op_b = operands(m, n, k, ta, tb, round_tf32=version == 3, pad=pad)
        got = run_gemm(dev, version, ta, tb, m, n, k, 1.0, 0.5, a, b, c, offset=offset,
                       lda=a.shape[1], ldb=b.shape[1])
        assert_gemm(got, 1.0, op_a, op_b, 0.5, c, F32_EPS)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_batched_with_a_shared_operand(dev, version):   # noqa: F811
    """C_i = W @ X_i for 3 products in one launch, W shared (stride 0), as Convolution runs."""
    batch, m, n, k = 3, 19, 33, 27
    w = RNG.normal(size=(m, k)).astype(np.float32)
    x = RNG.normal(size=(batch, k, n)).astype(np.float32)
    if version == 3:
        w, x = tf32(w), tf32(x)
    pc = dev.empty(batch * m * n)
    blas.gemm(False, False, m, n, k, 1.0, dev.put(w), dev.put(x), 0.0, pc, batch=batch,
              stride_a=0, stride_b=k * n, stride_c=m * n, version=version)
    got = dev.get(pc, (batch, m, n))
    for i in range(batch):
        assert_gemm(got[i], 1.0, w.astype(np.float64), x[i].astype(np.float64), 0.0,
                    np.zeros((m, n)), F32_EPS)


def test_shape_based_choice_runs_every_shape(dev):   # noqa: F811
    """blas.gemm without a version (v1 or v2 by shape; v3 with the TF32 switch on)."""
    for tf32_on in (False, True):
        blas.set_tf32(tf32_on)
        try:
            m, n, k = 130, 70, 20
            a, b, c, op_a, op_b = operands(m, n, k, False, True, round_tf32=True)
            pc = dev.put(c)
            blas.gemm(False, True, m, n, k, 1.0, dev.put(a), dev.put(b), 1.0, pc)
            assert_gemm(dev.get(pc, (m, n)), 1.0, op_a, op_b, 1.0, c, F32_EPS)
        finally:
            blas.set_tf32(False)
