import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_in_place,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
)


def bias_text(**settings):
    return layer_text("Bias", "bias_param", **settings)


def test_learned_per_channel():
    x, b = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=3)
    want = np.empty_like(x)
    for c in range(3):
        want[:, c] = x[:, c] + b[c]
    layer, _, _ = check_layer('type: "Bias"', [x], [want], params=[b])
    assert layer.blobs[0].shape == (3,)


def test_learned_two_axes_from_axis_2():
    x, b = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(4, 5))
    check_layer(bias_text(axis=2, num_axes=2), [x], [x + b[None, None]], params=[b])


def test_learned_to_the_end_with_negative_axis():
    x, b = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(3, 4))
    layer, _, _ = check_layer(bias_text(axis=-2, num_axes=-1), [x], [x + b], params=[b])
    assert layer.blobs[0].shape == (3, 4)


def test_learned_scalar():
    x = RNG.normal(size=(2, 3))
    layer, _, _ = check_layer(bias_text(num_axes=0), [x], [x + 0.5], params=[0.5])
    assert layer.blobs[0].shape == ()


def test_filler():
    text = 'type: "Bias" bias_param { filler { type: "constant" value: 1.5 } }'
    layer, _, _ = check_layer(text, [np.zeros((2, 4, 3))], [np.full((2, 4, 3), 1.5)],
                              check_grad=False)
    np.testing.assert_array_equal(layer.blobs[0].data, [1.5] * 4)


def test_default_filler_is_zero():
    layer, _, _ = check_layer('type: "Bias"', [RNG.normal(size=(2, 4))], check_grad=False)
    np.testing.assert_array_equal(layer.blobs[0].data, 0)


def test_second_bottom():
    x, b = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(3, 4))
    layer, _, _ = check_layer('type: "Bias"', [x, b], [x + b[None, :, :, None]])
    assert layer.blobs == []


def test_second_bottom_at_axis_0_and_scalar():
    x, b = RNG.normal(size=(3, 4)), RNG.normal(size=3)
    check_layer(bias_text(axis=0), [x, b], [x + b[:, None]])
    check_layer(bias_text(axis=1), [x, np.array(2.0)], [x + 2.0])


def test_in_place():
    check_in_place('type: "Bias" bias_param { filler { type: "gaussian" } }',
                   [RNG.normal(size=(2, 3, 4))])
    check_in_place('type: "Bias"', [RNG.normal(size=(2, 3, 4)), RNG.normal(size=3)])


def test_parameter_gradient_accumulates():
    layer, bottom, top = check_layer('type: "Bias"', [RNG.normal(size=(2, 3))],
                                     check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, [4, 4, 4])


@pytest.mark.parametrize("bottoms, text, message", [
    ([(2, 3, 4), (4,)], 'type: "Bias"', "does not line up"),
    ([(2, 3)], bias_text(axis=1, num_axes=2), "run past"),
    ([(2, 3)], bias_text(axis=2), "out of range"),
    ([(2, 3)], bias_text(num_axes=-2), "num_axes must be"),
])
def test_errors(bottoms, text, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(text).setup(make_blobs([np.zeros(s) for s in bottoms]), make_blobs([0]))


RANDOM_B = 'filler { type: "gaussian" }'   # the default filler makes the identity


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, shapes", [
    # Learned b: per channel; the last two axes; a scalar. Then b as a second bottom.
    (RANDOM_B, [(3, 5, 4, 7)]),
    (f"axis: -2 num_axes: -1 {RANDOM_B}", [(3, 5, 4, 7)]),
    (f"num_axes: 0 {RANDOM_B}", [(3, 7)]),
    ("", [(3, 5, 9, 7), (5, 9)]),
    ("axis: 0", [(3, 5, 7), (3, 5)]),
])
def test_gpu(device, settings, shapes):
    check_layer_gpu(f'type: "Bias" bias_param {{ {settings} }}',
                    [RNG.normal(size=s) for s in shapes], device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_in_place_gpu(device):
    check_layer_gpu(f'type: "Bias" bias_param {{ {RANDOM_B} }}', [RNG.normal(size=(3, 5, 7))],
                    device=device, in_place=True)
