"""Host matrix products shared out over confnet's workers: the products numpy makes, and a
reduction summed from one part per worker."""

import itertools

import numpy as np
import pytest
import threadpoolctl

from confnet import host_blas, threads

RNG = np.random.default_rng(7)


@pytest.fixture(params=[1, 3], ids=["1 worker", "3 workers"])
def workers(request, monkeypatch):
    monkeypatch.setitem(threads._state, "count", request.param)
    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
    return request.param


def blas_threads():
    return {info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"}


@pytest.mark.parametrize("stacked", [False, True])
def test_matmul_batches_is_matmul(workers, stacked):
    a = RNG.normal(size=(7, 2, 3, 5) if stacked else (2, 3, 5)).astype(np.float32)
    b = RNG.normal(size=(7, 2, 5, 4)).astype(np.float32)
    out = np.full((7, 2, 3, 4), np.nan, np.float32)
    before = blas_threads()
    host_blas.matmul_batches(a, b, out)
    np.testing.assert_array_equal(out, np.matmul(a, b))   # the same products, unsplit
    assert blas_threads() == before   # the one-thread limit is lifted afterwards


def test_matmul_reduce_sums_one_part_per_worker(workers):
    a, b = RNG.normal(size=(2, 6, 101)), RNG.normal(size=(2, 101, 3))
    out = host_blas.matmul_reduce(a, b, out=np.empty((2, 6, 3)))
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    bounds = [101 * i // workers for i in range(workers + 1)]
    parts = [a[..., lo:hi] @ b[:, lo:hi] for lo, hi in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(out, sum(parts[1:], parts[0]))
