import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_layer


def reference_crop(x, ref_shape, start, offsets):
    """Element by element: top index i reads x at i + offset (offset 0 before ``start``)."""
    shape = x.shape[:start] + ref_shape[start:]
    full = [0] * start + list(offsets)
    y = np.empty(shape)
    for i in np.ndindex(*shape):
        y[i] = x[tuple(a + o for a, o in zip(i, full))]
    return y


@pytest.mark.parametrize("fields, ref_shape, start, offsets", [
    ("", (2, 3, 4, 3), 2, (0, 0)),                          # default axis 2, offset 0
    ("offset: 1", (2, 3, 4, 3), 2, (1, 1)),                 # one offset for every axis
    ("axis: 1 offset: 1 offset: 2 offset: 0", (2, 2, 3, 5), 1, (1, 2, 0)),
    ("axis: -1 offset: 2", (9, 9, 9, 3), 3, (2,)),          # negative axis; only shape[3] read
])
def test_crop(fields, ref_shape, start, offsets):
    x = RNG.normal(size=(2, 3, 6, 5))
    ref = RNG.normal(size=ref_shape)
    want = reference_crop(x, ref_shape, start, offsets)
    check_layer(f'type: "Crop" crop_param {{ {fields} }}', [x, ref], [want], no_grad=(1,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fields, x_shape, ref_shape", [
    ("axis: 1 offset: 1 offset: 2 offset: 0", (3, 5, 7, 6), (3, 3, 4, 6)),
    ("offset: 2", (2, 3, 9, 7), (1, 1, 5, 3)),
    ("axis: -1 offset: 3", (3, 5, 11), (1, 1, 7)),
    ("axis: 0 offset: 1", (4, 3, 2, 5, 3), (2, 2, 1, 3, 2)),     # every axis cropped, 5-D
])
def test_gpu_matches_cpu(device, fields, x_shape, ref_shape):
    # The reference gets a gradient of zeros on both sides (it is compared too).
    check_layer_gpu(f'type: "Crop" crop_param {{ {fields} }}',
                    [RNG.normal(size=x_shape), RNG.normal(size=ref_shape)], device=device)


def test_gradient_is_zero_outside_the_crop_and_for_the_reference():
    layer, bottom, top = check_layer('type: "Crop" crop_param { offset: 1 }',
                                     [RNG.normal(size=(1, 2, 5, 5)), np.zeros((1, 2, 3, 3))],
                                     check_grad=False)
    top[0].diff[...] = 1
    bottom[1].diff[...] = 7
    layer.backward(top, [True, True], bottom)
    assert bottom[0].diff.sum() == top[0].count
    np.testing.assert_array_equal(bottom[0].diff[:, :, 1:4, 1:4], 1)
    assert not bottom[1].diff.any()
    assert not layer.allow_force_backward(1)


@pytest.mark.parametrize("fields, shapes, message", [
    ("offset: 1 offset: 1 offset: 1", [(1, 2, 5, 5), (1, 2, 3, 3)], "needs 0, 1 or 2 offsets"),
    ("offset: 3", [(1, 2, 5, 5), (1, 2, 3, 3)], "crop of axis 2 is out of bounds"),
    ("axis: 4", [(1, 2, 5, 5), (1, 2, 3, 3)], "axis 4 out of range"),
    ("", [(1, 2, 5, 5), (1, 2, 3)], "fewer axes"),
])
def test_bad_settings_fail_clearly(fields, shapes, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(f'type: "Crop" crop_param {{ {fields} }}').setup(
            [Blob(s) for s in shapes], [Blob()])
