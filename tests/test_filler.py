"""Fillers: each against its defining formula (statistics on large draws, exact where exact)."""

import numpy as np
import pytest

from confnet import rng
from confnet.errors import ConfnetError
from confnet.filler import fill
from confnet.proto import confnet_pb2 as pb


def filled(shape, dtype=np.float32, **kw):
    rng.seed(0)
    a = np.zeros(shape, dtype)
    fill(a, pb.FillerParameter(**kw))
    return a


def test_constant_and_uniform():
    assert np.all(filled((3, 4), type="constant", value=2.5) == 2.5)
    u = filled((200, 300), type="uniform", min=-2, max=3)
    assert u.dtype == np.float32 and u.min() >= -2 and u.max() < 3
    assert abs(u.mean() - 0.5) < 0.02


def test_gaussian_and_sparse():
    g = filled((300, 400), np.float64, type="gaussian", mean=1, std=0.5)
    assert abs(g.mean() - 1) < 0.01 and abs(g.std() - 0.5) < 0.01
    s = filled((10, 20000), type="gaussian", std=1, sparse=3)   # keep probability 3/10
    assert abs((s != 0).mean() - 0.3) < 0.01


@pytest.mark.parametrize("norm, n", [(0, 50 * 9), (1, 20 * 9), (2, (450 + 180) / 2)])
def test_xavier_and_msra_scale_with_fan(norm, n):
    shape = (20, 50, 3, 3)            # fan_in = 50*9, fan_out = 20*9
    x = filled(shape, type="xavier", variance_norm=norm)
    bound = np.sqrt(3.0 / n)
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.99 * bound
    m = filled(shape, np.float64, type="msra", variance_norm=norm)
    assert abs(m.std() - np.sqrt(2.0 / n)) < 0.03 * np.sqrt(2.0 / n)


def test_positive_unitball_rows_sum_to_one():
    p = filled((6, 2, 5), np.float64, type="positive_unitball")
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.reshape(6, -1).sum(axis=1), 1.0)


def test_bilinear_upsampling_kernel():
    b = filled((2, 1, 4, 4), np.float64, type="bilinear")
    axis = np.array([0.25, 0.75, 0.75, 0.25])        # f = 2, c = 0.75: 1 - |x/f - c|
    np.testing.assert_allclose(b[1, 0], np.outer(axis, axis))
    with pytest.raises(ConfnetError, match="square"):
        filled((1, 1, 3, 4), type="bilinear")


def test_unknown_filler_lists_known():
    with pytest.raises(ConfnetError, match="unknown filler type 'gauss'.*gaussian"):
        filled((2,), type="gauss")
