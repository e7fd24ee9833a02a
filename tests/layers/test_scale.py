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


def scale_text(**settings):
    return layer_text("Scale", "scale_param", **settings)


def test_learned_per_channel():
    x, s = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=3)
    want = np.einsum("nchw,c->nchw", x, s)
    layer, _, _ = check_layer('type: "Scale"', [x], [want], params=[s])
    assert [b.shape for b in layer.blobs] == [(3,)]


def test_learned_with_bias():
    x, s, b = RNG.normal(size=(2, 3, 4)), RNG.normal(size=3), RNG.normal(size=3)
    want = np.einsum("nch,c->nch", x, s) + b[None, :, None]
    layer, _, _ = check_layer(scale_text(bias_term="true"), [x], [want], params=[s, b])
    assert [blob.shape for blob in layer.blobs] == [(3,), (3,)]


def test_learned_two_axes_from_axis_2():
    x, s = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(4, 5))
    check_layer(scale_text(axis=2, num_axes=2), [x], [np.einsum("nchw,hw->nchw", x, s)],
                params=[s])


def test_learned_to_the_end():
    x, s = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(3, 4))
    layer, _, _ = check_layer(scale_text(num_axes=-1), [x], [x * s], params=[s])
    assert layer.blobs[0].shape == (3, 4)


def test_learned_scalar_with_bias():
    x = RNG.normal(size=(2, 3))
    layer, _, _ = check_layer(scale_text(num_axes=0, bias_term="true"), [x], [x * 1.5 - 0.5],
                              params=[1.5, -0.5])
    assert [b.shape for b in layer.blobs] == [(), ()]


def test_default_fillers_make_the_identity():
    x = RNG.normal(size=(2, 4, 3))
    layer, _, _ = check_layer(scale_text(bias_term="true"), [x], [x], check_grad=False)
    np.testing.assert_array_equal(layer.blobs[0].data, 1)
    np.testing.assert_array_equal(layer.blobs[1].data, 0)


def test_fillers():
    text = ('type: "Scale" scale_param { filler { type: "constant" value: 2 } bias_term: true '
            'bias_filler { type: "constant" value: 0.5 } }')
    check_layer(text, [np.ones((2, 3))], [np.full((2, 3), 2.5)], check_grad=False)


def test_second_bottom():
    x, s = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(3, 4))
    layer, _, _ = check_layer('type: "Scale"', [x, s], [np.einsum("nchw,ch->nchw", x, s)])
    assert layer.blobs == []


def test_second_bottom_with_bias():
    x, s, b = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    layer, _, _ = check_layer(scale_text(axis=0, bias_term="true"), [x, s],
                              [x * s[:, :, None] + b[:, :, None]], params=[b])
    assert [blob.shape for blob in layer.blobs] == [(2, 3)]


def test_second_bottom_scalar_and_same_shape():
    x = RNG.normal(size=(3, 4))
    check_layer(scale_text(axis=1), [x, np.array(-2.0)], [x * -2.0])
    s = RNG.normal(size=(3, 4))
    check_layer(scale_text(axis=0), [x, s], [x * s])


@pytest.mark.parametrize("text, bottoms", [
    (scale_text(bias_term="true", filler='{ type: "gaussian" }',
                bias_filler='{ type: "gaussian" }'), [(2, 3, 4)]),
    ('type: "Scale"', [(2, 3, 4), (3,)]),
])
def test_in_place(text, bottoms):
    check_in_place(text, [RNG.normal(size=s) for s in bottoms])


def test_parameter_gradients_accumulate():
    x = RNG.normal(size=(2, 3))
    layer, bottom, top = check_layer(scale_text(bias_term="true"), [x], check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * x.sum(axis=0))
    np.testing.assert_array_equal(layer.blobs[1].diff, [4, 4, 4])


@pytest.mark.parametrize("bottoms, text, message", [
    ([(2, 3, 4), (4,)], 'type: "Scale"', "does not line up"),
    ([(2, 3)], scale_text(axis=1, num_axes=2), "run past"),
    ([(2, 3)], scale_text(axis=-3), "out of range"),
])
def test_errors(bottoms, text, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(text).setup(make_blobs([np.zeros(s) for s in bottoms]), make_blobs([0]))


# Learned s and b filled at random (the default fillers make the identity).
RANDOM_S, RANDOM_B = 'filler { type: "gaussian" }', 'bias_filler { type: "gaussian" }'


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, shapes", [
    # Learned s (and b): per channel; two axes from axis 2; a scalar.
    (RANDOM_S, [(3, 5, 4, 7)]),
    (f"bias_term: true {RANDOM_S} {RANDOM_B}", [(3, 5, 4, 7)]),
    (f"axis: 2 num_axes: 2 bias_term: true {RANDOM_S} {RANDOM_B}", [(2, 3, 5, 7)]),
    (f"num_axes: 0 bias_term: true {RANDOM_S} {RANDOM_B}", [(3, 7)]),
    # s as a second bottom, whose gradient is written: per channel, from axis 0, a scalar.
    ("", [(3, 5, 9, 7), (5, 9)]),
    (f"axis: 0 bias_term: true {RANDOM_B}", [(3, 5, 7), (3, 5)]),
    ("", [(3, 5, 7), ()]),
])
def test_gpu(device, settings, shapes):
    check_layer_gpu(f'type: "Scale" scale_param {{ {settings} }}',
                    [RNG.normal(size=s) for s in shapes], device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_in_place_gpu(device):
    # Backward needs x, which forward overwrites in place: the device keeps a copy too.
    text = f'type: "Scale" scale_param {{ bias_term: true {RANDOM_S} {RANDOM_B} }}'
    check_layer_gpu(text, [RNG.normal(size=(3, 5, 7))], device=device, in_place=True)
