import itertools

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_layer


def reference_slice(x, axis, bounds):
    """Index by hand: piece j holds x's entries bounds[j] .. bounds[j + 1] - 1 along axis."""
    pieces = []
    for start, end in itertools.pairwise(bounds):
        index = [slice(None)] * x.ndim
        index[axis] = list(range(start, end))
        pieces.append(x[tuple(index)])
    return pieces


@pytest.mark.parametrize("fields, axis, bounds", [
    ("", 1, [0, 2, 4, 6]),                                      # equal split of 6 into 3
    ("slice_point: 1 slice_point: 5", 1, [0, 1, 5, 6]),
    ("axis: -1 slice_point: 2", 2, [0, 2, 4]),
    ("slice_dim: 0", 0, [0, 1, 2, 3]),                          # legacy field
    ("axis: 0 slice_point: 1 slice_point: 3", 0, [0, 1, 3, 3]),  # an empty last piece
])
def test_slice(fields, axis, bounds):
    x = RNG.normal(size=(3, 6, 4))
    want = reference_slice(x, axis, bounds)
    check_layer(f'type: "Slice" slice_param {{ {fields} }}', [x], want)


def test_one_top_is_viewed():
    x = RNG.normal(size=(2, 3))
    _, bottom, top = check_layer('type: "Slice"', [x], [x])
    assert np.shares_memory(top[0].data, bottom[0].data)
    assert np.shares_memory(top[0].diff, bottom[0].diff)


def test_propagate_down_false_leaves_the_bottom_alone():
    layer, bottom, top = check_layer('type: "Slice"', [RNG.normal(size=(2, 4))], num_top=2,
                                     check_grad=False)
    bottom[0].diff[...] = 7
    layer.backward(top, [False], bottom)
    assert np.all(bottom[0].diff == 7)


@pytest.mark.parametrize("fields, tops, message", [
    ("axis: 1 slice_dim: 1", 2, "either axis or slice_dim"),
    ("slice_point: 2", 3, "make 2 pieces, but there are 3 top"),
    ("slice_point: 2 slice_point: 2", 3, "positive and increasing"),
    ("slice_point: 0", 2, "positive and increasing"),
    ("slice_point: 7", 2, "goes past the size 6"),
    ("", 4, "do not divide axis 1 of size 6"),
    ("slice_dim: 3", 2, "slice_dim 3 out of range"),
])
def test_bad_settings_fail_clearly(fields, tops, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(f'type: "Slice" slice_param {{ {fields} }}').setup(
            [Blob((3, 6, 4))], [Blob() for _ in range(tops)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, num_top", [
    ("axis: 1 slice_point: 1 slice_point: 4", 3), ("axis: 0", 3), ("axis: -1 slice_point: 2", 2),
    ("axis: 1", 1)])
def test_gpu(device, settings, num_top):
    check_layer_gpu(f'type: "Slice" slice_param {{ {settings} }}', [RNG.normal(size=(3, 5, 7))],
                    device=device, num_top=num_top)
