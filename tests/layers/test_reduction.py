import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    away_from,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
)

OPS = {
    "SUM": lambda x, axes: np.sum(x, axis=axes),
    "ASUM": lambda x, axes: np.sum(np.abs(x), axis=axes),
    "SUMSQ": lambda x, axes: np.sum(x ** 2, axis=axes),
    "MEAN": lambda x, axes: np.mean(x, axis=axes),
}


def reduction_text(**settings):
    return layer_text("Reduction", "reduction_param", **settings)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_ops_and_axes(op, axis):
    x = away_from(RNG.normal(size=(2, 3, 4)), [0.0])
    first = axis % x.ndim
    want = OPS[op](x, tuple(range(first, x.ndim)))
    check_layer(reduction_text(operation=op, axis=axis), [x], [want], samples=24)


@pytest.mark.parametrize("op", sorted(OPS))
def test_coeff(op):
    x = away_from(RNG.normal(size=(3, 5)), [0.0])
    want = -0.5 * OPS[op](x, (1,))
    check_layer(reduction_text(operation=op, axis=1, coeff=-0.5), [x], [want])


def test_default_sums_everything_to_a_scalar():
    x = RNG.normal(size=(2, 3))
    _, _, top = check_layer('type: "Reduction"', [x], [np.float64(x.sum())])
    assert top[0].shape == ()


def test_axis_out_of_range():
    layer = make_layer(reduction_text(axis=3))
    with pytest.raises(ConfnetError, match="axis 3"):
        layer.setup(make_blobs([np.zeros((2, 3))]), make_blobs([0.0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("axis, coeff", [(0, 1.0), (1, -0.5), (-1, 2.5)])
def test_gpu(device, op, axis, coeff):
    # Rows of 315 (axis 1) and the whole 945-value blob (axis 0): more than a block's threads;
    # x away from 0, where ASUM's gradient jumps (sign(0) = 0 on both sides). Sums of hundreds
    # of O(1) terms in float32 differ by ~1e-5 between orders of addition (numpy's pairwise,
    # the device's tree), which is large relative to a SUM that cancels to near 0: hence atol.
    x = away_from(RNG.normal(size=(3, 5, 9, 7)), [0.0])
    check_layer_gpu(reduction_text(operation=op, axis=axis, coeff=coeff), [x], device=device,
                    atol=1e-4)
