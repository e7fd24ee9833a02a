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


def kept_items(blob, selector):
    return np.array([blob[n] for n in range(len(selector)) if selector.ravel()[n] != 0]) \
        .reshape((-1,) + blob.shape[1:])


def test_filters_every_bottom():
    x, z = RNG.normal(size=(5, 3, 2)), RNG.normal(size=(5,))
    selector = np.array([0.0, 1.0, 0.0, 2.5, -1.0]).reshape(5, 1)
    check_layer('type: "Filter"', [x, z, selector],
                [kept_items(x, selector), kept_items(z, selector)], no_grad=(2,))


def test_backward_zeroes_what_was_filtered_out():
    x, selector = RNG.normal(size=(4, 2)), np.array([1.0, 0.0, 0.0, 1.0])
    layer, bottom, top = check_layer('type: "Filter"', [x, selector], [x[[0, 3]]],
                                     no_grad=(1,))
    top[0].diff[...] = [[1, 2], [3, 4]]
    bottom[0].diff[...] = 9.0
    layer.backward(top, [True, False], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[1, 2], [0, 0], [0, 0], [3, 4]])


def test_nothing_selected():
    x = RNG.normal(size=(3, 2))
    _, bottom, top = check_layer('type: "Filter"', [x, np.zeros(3)], [np.zeros((0, 2))],
                                 no_grad=(1,))
    assert top[0].shape == (0, 2) and np.all(bottom[0].diff == 0)


def test_set_up_gives_the_whole_batch():
    layer = make_layer('type: "Filter"')
    bottom, top = make_blobs([np.zeros((4, 3)), np.array([1.0, 0, 0, 0])]), make_blobs([0.0])
    layer.setup(bottom, top)
    assert top[0].shape == (4, 3)
    layer.reshape(bottom, top)
    assert top[0].shape == (1, 3)


def test_no_gradient_to_the_selector():
    layer = make_layer('type: "Filter"')
    bottom = make_blobs([np.zeros((2, 3)), np.zeros(2), np.ones(2)])
    top = make_blobs([0.0, 0.0])
    layer.setup(bottom, top)
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, True, False]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    with pytest.raises(ConfnetError, match="selector"):
        layer.backward(top, [True, False, True], bottom)


@pytest.mark.parametrize("shapes, tops, message", [
    (((2, 3), (2,)), 2, "one top per filtered bottom"),
    (((2, 3), (2, 2)), 1, "dimensions but the first must be 1"),
    (((3, 3), (2, 1)), 1, r"needs the selector's first dimension 2"),
])
def test_errors(shapes, tops, message):
    layer = make_layer('type: "Filter"', name="f")
    with pytest.raises(ConfnetError, match=f"layer 'f'.*{message}"):
        layer.setup(make_blobs([np.ones(s) for s in shapes]), make_blobs([0.0] * tops))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("selector", [[0, 1, 1, 0, 0, 1, 1], [1] * 7, [0] * 6 + [1]])
def test_gpu(device, selector):
    # Two filtered bottoms of different item shapes; the selector's own gradient is not asked.
    bottoms = [RNG.normal(size=(7, 3, 5)), RNG.normal(size=(7, 2)),
               np.array(selector, float).reshape(7, 1)]
    check_layer_gpu('type: "Filter"', bottoms, device=device, num_top=2, no_grad=(2,))
