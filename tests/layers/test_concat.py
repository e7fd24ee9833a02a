import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_layer


def pieces(sizes, axis, shape=(2, 3, 4)):
    """Random arrays of ``shape`` whose size along ``axis`` is each of ``sizes``."""
    out = []
    for n in sizes:
        s = list(shape)
        s[axis] = n
        out.append(RNG.normal(size=s))
    return out


@pytest.mark.parametrize("field, axis", [("", 1), ("concat_param { axis: 0 }", 0),
                                         ("concat_param { axis: -1 }", 2),
                                         ("concat_param { concat_dim: 0 }", 0)])
def test_concat(field, axis):
    xs = pieces([1, 3, 2], axis)
    check_layer(f'type: "Concat" {field}', xs, [np.concatenate(xs, axis=axis)])


def test_one_bottom_is_viewed():
    x = RNG.normal(size=(2, 3))
    _, bottom, top = check_layer('type: "Concat"', [x], [x])
    assert np.shares_memory(top[0].data, bottom[0].data)
    assert np.shares_memory(top[0].diff, bottom[0].diff)


def test_propagate_down_leaves_other_bottoms_alone():
    layer, bottom, top = check_layer('type: "Concat"', pieces([2, 2], 1), check_grad=False)
    bottom[0].diff[...] = 7
    top[0].diff[...] = RNG.normal(size=top[0].shape)
    layer.backward(top, [False, True], bottom)
    assert np.all(bottom[0].diff == 7)
    np.testing.assert_array_equal(bottom[1].diff, top[0].diff[:, 2:])


def test_axis_and_concat_dim_together():
    with pytest.raises(ConfnetError, match="either axis or concat_dim"):
        make_layer('type: "Concat" concat_param { axis: 1 concat_dim: 1 }').setup(
            [Blob((2, 2))], [Blob()])


@pytest.mark.parametrize("shapes", [[(2, 3, 4), (3, 3, 4)], [(2, 3, 4), (2, 3)]])
def test_shape_mismatch(shapes):
    layer = make_layer('type: "Concat"', name="cat")
    with pytest.raises(ConfnetError, match="layer 'cat'.*bottom\\[1\\] has shape"):
        layer.setup([Blob(s) for s in shapes], [Blob()])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis, sizes", [(1, [3, 1, 5]), (0, [2, 3]), (-1, [7, 2]), (1, [3])])
def test_gpu(device, axis, sizes):
    # Odd sizes along each axis; a single bottom is viewed, not copied.
    shape = [3, 5, 7]
    bottoms = []
    for n in sizes:
        shape[axis] = n
        bottoms.append(RNG.normal(size=shape))
    check_layer_gpu(f'type: "Concat" concat_param {{ axis: {axis} }}', bottoms, device=device)
