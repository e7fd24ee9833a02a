import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
)


def ranked(values, k):
    """Indices of the k largest values, larger index first among equal values."""
    order = sorted(range(len(values)), key=lambda j: (values[j], j), reverse=True)
    return order[:k]


def expected_flat(x, k, out_max_val):
    n = x.shape[0]
    shape = [1] * max(x.ndim, 3)
    shape[0], shape[1], shape[2] = n, 2 if out_max_val else 1, k
    out = np.zeros((n, 2 if out_max_val else 1, k))
    for i in range(n):
        row = x[i].ravel()
        best = ranked(list(row), k)
        out[i, 0] = best
        if out_max_val:
            out[i, 1] = row[best]
    return out.reshape(shape)


def expected_axis(x, k, axis, out_max_val):
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1] + (k,))
    for idx in np.ndindex(*moved.shape[:-1]):
        values = list(moved[idx])
        best = ranked(values, k)
        out[idx] = [values[j] for j in best] if out_max_val else best
    return np.moveaxis(out, -1, axis)


def argmax_text(**settings):
    return layer_text("ArgMax", "argmax_param", **settings)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 2, 2)])
@pytest.mark.parametrize("out_max_val", ["false", "true"])
def test_over_each_item(shape, out_max_val):
    x = RNG.normal(size=shape)
    want = expected_flat(x, 3, out_max_val == "true")
    check_layer(argmax_text(top_k=3, out_max_val=out_max_val), [x], [want], check_grad=False)


def test_default_top_1():
    x = RNG.normal(size=(4, 6))
    _, _, top = check_layer('type: "ArgMax"', [x], [expected_flat(x, 1, False)],
                            check_grad=False)
    assert top[0].shape == (4, 1, 1)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("out_max_val", ["false", "true"])
def test_along_axis(axis, out_max_val):
    x = RNG.normal(size=(3, 4, 5))
    want = expected_axis(x, 2, axis, out_max_val == "true")
    check_layer(argmax_text(top_k=2, axis=axis, out_max_val=out_max_val), [x], [want],
                check_grad=False)


def test_ties_rank_the_higher_index_first():
    x = RNG.integers(0, 3, size=(4, 7)).astype(float)
    check_layer(argmax_text(top_k=4, out_max_val="true"), [x], [expected_flat(x, 4, True)],
                check_grad=False)
    check_layer(argmax_text(top_k=3, axis=0), [x], [expected_axis(x, 3, 0, False)],
                check_grad=False)


def test_top_k_too_large():
    layer = make_layer(argmax_text(top_k=4, axis=1), name="am")
    with pytest.raises(ConfnetError, match="layer 'am'.*top_k 4"):
        layer.setup(make_blobs([np.zeros((2, 3))]), make_blobs([0.0]))


def test_no_backward():
    layer, bottom, top = check_layer('type: "ArgMax"', [RNG.normal(size=(2, 3))],
                                     check_grad=False)
    assert not layer.allow_force_backward(0)
    layer.backward(top, [False], bottom)
    with pytest.raises(ConfnetError, match="no gradient"):
        layer.backward(top, [True], bottom)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings", ["", "top_k: 3", "top_k: 4 out_max_val: true",
                                      "axis: 1 top_k: 2", "axis: -1 top_k: 3 out_max_val: true",
                                      "axis: 0 out_max_val: true"])
def test_gpu(device, settings):
    # Few distinct values, so ties are everywhere: the device must rank them as the CPU does.
    x = RNG.integers(0, 4, size=(3, 5, 7)).astype(float)
    check_layer_gpu(f'type: "ArgMax" argmax_param {{ {settings} }}', [x], device=device,
                    backward=False, rtol=0, atol=0)
