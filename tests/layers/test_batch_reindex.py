import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    make_blobs,
    make_layer,
)


def test_permutation_with_repeats():
    x, index = RNG.normal(size=(5, 2, 3)), np.array([4.0, 0.0, 0.0, 2.0, 0.0, 4.0])
    want = np.stack([x[int(i)] for i in index])
    _, bottom, _ = check_layer('type: "BatchReindex"', [x, index], [want], no_grad=(1,))
    assert bottom[1].diff.sum() == 0


def test_gradient_sums_over_repeats():
    x, index = RNG.normal(size=(3, 2)), np.array([2.0, 2.0, 0.0])
    layer, bottom, top = check_layer('type: "BatchReindex"', [x, index], [x[[2, 2, 0]]],
                                     no_grad=(1,))
    top[0].diff[...] = [[1, 2], [10, 20], [5, 5]]
    layer.backward(top, [True, False], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[5, 5], [0, 0], [11, 22]])


@pytest.mark.parametrize("bad", [-1.0, 3.0])
def test_index_out_of_range(bad):
    layer = make_layer('type: "BatchReindex"', name="ri")
    bottom, top = make_blobs([np.zeros((3, 2)), np.array([0.0, bad])]), make_blobs([0.0])
    layer.setup(bottom, top)
    with pytest.raises(ConfnetError, match=r"layer 'ri'.*position 1 .*outside 0\.\.2"):
        layer.forward(bottom, top)


def test_indices_must_be_1d():
    layer = make_layer('type: "BatchReindex"')
    with pytest.raises(ConfnetError, match="1-D"):
        layer.setup(make_blobs([np.zeros((3, 2)), np.zeros((2, 1))]), make_blobs([0.0]))


def test_no_gradient_to_the_indices():
    layer = make_layer('type: "BatchReindex"')
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)
    bottom, top = make_blobs([np.zeros((3, 2)), np.array([1.0])]), make_blobs([0.0])
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    with pytest.raises(ConfnetError, match="indices"):
        layer.backward(top, [True, True], bottom)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("positions", [6, 300])
def test_gpu(device, positions):
    # Repeats (their gradients summed in order), items never picked (zero gradient), indices
    # with a fraction (truncated); 300 positions span two chunks of the backward's scan.
    index = RNG.integers(0, 4, size=positions) + RNG.choice([0.0, 0.5], size=positions)
    check_layer_gpu('type: "BatchReindex"', [RNG.normal(size=(5, 3, 7)), index], device=device,
                    no_grad=(1,))
