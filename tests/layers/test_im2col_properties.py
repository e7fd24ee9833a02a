"""im2col and col2im on random geometries (hypothesis): im2col equals the element-by-element
definition, and col2im is its adjoint: <im2col(x), y> == <x, col2im(y)> for any x and y."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from confnet.layers.im2col import col2im, im2col, output_shape
from tests.layers.test_im2col import reference_im2col


@st.composite
def geometries(draw):
    axes = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(axes))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(axes))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(axes))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(axes))
    spatial = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 6))
                    for k, p, d in zip(kernel, pad, dilation))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + spatial
    return shape, kernel, pad, stride, dilation


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1))
def test_im2col_definition_and_col2im_adjoint(geometry, seed):
    shape, kernel, pad, stride, dilation = geometry
    assert all(o >= 1 for o in output_shape(shape[2:], kernel, pad, stride, dilation))
    g = np.random.default_rng(seed)
    x = g.normal(size=shape)
    col = im2col(x, kernel, pad, stride, dilation)
    np.testing.assert_array_equal(col, reference_im2col(x, kernel, pad, stride, dilation))
    y = g.normal(size=col.shape)
    back = np.empty(shape)
    col2im(y, back, kernel, pad, stride, dilation)
    np.testing.assert_allclose(np.vdot(col, y), np.vdot(x, back), rtol=1e-10)
