import itertools

import numpy as np
import pytest

from confnet.layers.im2col import col2im, im2col, output_shape
from tests.layers.harness import RNG

CASES = [
    # x shape, kernel, pad, stride, dilation
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 2, 9, 8), (2, 3), (1, 0), (2, 3), (1, 1)),
    ((1, 2, 11, 10), (3, 2), (2, 1), (2, 1), (2, 3)),
    ((2, 2, 5, 6, 7), (2, 3, 2), (1, 0, 1), (2, 1, 3), (1, 2, 1)),
]


def reference_im2col(x, kernel, pad, stride, dilation):
    """col[c, k..., n, o...] = xpad[n, c, o*s + k*d], one element at a time."""
    n_img, channels = x.shape[:2]
    out = tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                for size, k, p, s, d in zip(x.shape[2:], kernel, pad, stride, dilation))
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    col = np.zeros((channels, *kernel, n_img, *out))
    for c, n in itertools.product(range(channels), range(n_img)):
        for k in itertools.product(*map(range, kernel)):
            for o in itertools.product(*map(range, out)):
                src = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, stride, dilation))
                col[(c, *k, n, *o)] = xp[(n, c, *src)]
    return col


@pytest.mark.parametrize("shape, kernel, pad, stride, dilation", CASES)
def test_im2col_matches_elementwise_reference(shape, kernel, pad, stride, dilation):
    x = RNG.normal(size=shape)
    np.testing.assert_array_equal(im2col(x, kernel, pad, stride, dilation),
                                  reference_im2col(x, kernel, pad, stride, dilation))


@pytest.mark.parametrize("shape, kernel, pad, stride, dilation", CASES)
def test_col2im_is_the_adjoint_of_im2col(shape, kernel, pad, stride, dilation):
    x = RNG.normal(size=shape)
    col = RNG.normal(size=reference_im2col(x, kernel, pad, stride, dilation).shape)
    back = col2im(col, np.empty(shape), kernel, pad, stride, dilation)
    # <im2col(x), col> == <x, col2im(col)> for every x and col.
    np.testing.assert_allclose(np.sum(im2col(x, kernel, pad, stride, dilation) * col),
                               np.sum(x * back), rtol=1e-10)


def test_col2im_sums_overlapping_windows():
    # 1 x 1 x 3 x 3 input, 2 x 2 kernel, stride 1: the centre is read by all 4 windows.
    col = np.ones((1, 2, 2, 1, 2, 2))
    back = col2im(col, np.full((1, 1, 3, 3), np.nan), (2, 2), (0, 0), (1, 1), (1, 1))
    np.testing.assert_array_equal(back[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_im2col_keeps_float32():
    x = RNG.normal(size=(2, 3, 6, 6)).astype(np.float32)
    assert im2col(x, (3, 3), (1, 1), (1, 1), (1, 1)).dtype == np.float32
    out = np.empty_like(x)
    col = np.ones((3, 3, 3, 2, 6, 6), np.float32)
    assert col2im(col, out, (3, 3), (1, 1), (1, 1), (1, 1)).dtype == np.float32


def test_output_shape():
    assert output_shape((28, 12), (5, 3), (0, 1), (1, 2), (1, 2)) == (24, 5)
