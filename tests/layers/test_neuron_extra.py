import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    RNG,
    away_from,
    check_in_place,
    check_layer,
    make_blobs,
    make_layer,
    run_forward,
)


def test_elu():
    x = away_from(RNG.normal(size=(2, 3, 4, 5)) * 2, [0.0])
    want = [v if v > 0 else 0.5 * (np.exp(v) - 1) for v in x.ravel()]
    check_layer('type: "ELU" elu_param { alpha: 0.5 }', [x], [np.reshape(want, x.shape)])


def test_elu_default_alpha():
    x = away_from(RNG.normal(size=(3, 7)), [0.0])
    check_layer('type: "ELU"', [x], [np.where(x > 0, x, np.exp(x) - 1)])


def test_absval():
    x = away_from(RNG.normal(size=(2, 3, 4)), [0.0])
    check_layer('type: "AbsVal"', [x], [np.sqrt(x * x)])


def test_bnll():
    x = RNG.normal(size=(4, 5)) * 4
    check_layer('type: "BNLL"', [x], [np.log(1 + np.exp(x))])


def test_bnll_large_inputs_do_not_overflow():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check_layer('type: "BNLL"', [x], [[0.0, np.exp(-40.0), np.log(2), 40.0, 1000.0]],
                    rtol=1e-12, check_grad=False)


@pytest.mark.parametrize("power, scale, shift", [(2.0, 0.5, 1.0), (3.0, -1.5, 0.0),
                                                 (1.0, 2.0, -1.0), (0.5, 1.0, 3.0),
                                                 (-1.5, 2.0, 4.0), (0.0, 2.0, 1.0),
                                                 (2.0, 0.0, 1.5)])
def test_power(power, scale, shift):
    x = RNG.uniform(-1, 1, size=(2, 3, 4))
    base = shift + scale * x
    want = np.exp(power * np.log(np.abs(base))) * np.sign(base) ** power
    text = f'type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}'
    check_layer(text, [x], [want])


def test_power_defaults_are_identity():
    x = RNG.normal(size=(3, 4))
    check_layer('type: "Power"', [x], [x])


@pytest.mark.parametrize("base, scale, shift", [(-1, 1, 0), (2, 0.5, 1), (0.5, -2, 0.25),
                                                (-1, 3, -1)])
def test_exp(base, scale, shift):
    x = RNG.uniform(-1, 1, size=(2, 3, 4))
    e = np.e if base == -1 else base
    text = f'type: "Exp" exp_param {{ base: {base} scale: {scale} shift: {shift} }}'
    check_layer(text, [x], [e ** (shift + scale * x)])


@pytest.mark.parametrize("base, scale, shift", [(-1, 1, 0), (2, 0.5, 1.5), (10, 2, 3),
                                                (0.5, -1, 2)])
def test_log(base, scale, shift):
    x = RNG.uniform(0.1, 0.9, size=(2, 3, 4))
    e = np.e if base == -1 else base
    text = f'type: "Log" log_param {{ base: {base} scale: {scale} shift: {shift} }}'
    check_layer(text, [x], [np.log(shift + scale * x) / np.log(e)])


@pytest.mark.parametrize("text", ['type: "Exp" exp_param { base: -2 }',
                                  'type: "Log" log_param { base: 0 }',
                                  'type: "Log" log_param { base: 1 }'])
def test_bad_base_is_an_error(text):
    with pytest.raises(ConfnetError, match="base"):
        make_layer(text).setup(make_blobs([np.ones(3)]), make_blobs([0]))


def test_threshold():
    x = RNG.normal(size=(2, 3, 4))
    x[0, 0, :2] = 0.25
    want = (x > 0.25).astype(float)
    check_layer('type: "Threshold" threshold_param { threshold: 0.25 }', [x], [want],
                check_grad=False)


def test_threshold_has_no_backward():
    layer, bottom, top = check_layer('type: "Threshold"', [RNG.normal(size=(3, 4))],
                                     check_grad=False)
    assert not layer.allow_force_backward(0)
    layer.backward(top, [False], bottom)
    with pytest.raises(ConfnetError, match="has no backward"):
        layer.backward(top, [True], bottom)


def test_clip():
    x = away_from(RNG.normal(size=(3, 4, 5)), [-0.5, 0.75])
    check_layer('type: "Clip" clip_param { min: -0.5 max: 0.75 }', [x],
                [np.minimum(np.maximum(x, -0.5), 0.75)])


def test_clip_bounds_pass_the_gradient():
    layer, bottom, top = check_layer('type: "Clip" clip_param { min: -1 max: 1 }',
                                     [np.array([-2.0, -1.0, 0.0, 1.0, 2.0])], check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0, 1, 1, 1, 0])


def test_clip_needs_both_bounds():
    with pytest.raises(ConfnetError, match="needs both min and max"):
        make_layer('type: "Clip" clip_param { min: 0 }').setup(make_blobs([np.ones(3)]),
                                                               make_blobs([0]))


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_swish(beta):
    x = RNG.normal(size=(2, 3, 5)) * 3
    check_layer(f'type: "Swish" swish_param {{ beta: {beta} }}', [x],
                [x / (1 + np.exp(-beta * x))])


@pytest.mark.parametrize("text", ['type: "ELU" elu_param { alpha: 0.5 }', 'type: "AbsVal"',
                                  'type: "BNLL"',
                                  'type: "Power" power_param { power: 3 scale: 2 shift: 1 }',
                                  'type: "Exp" exp_param { base: 2 scale: 0.5 }',
                                  'type: "Log" log_param { shift: 3 }',
                                  'type: "Clip" clip_param { min: -0.5 max: 0.5 }',
                                  'type: "Swish" swish_param { beta: 1.5 }'])
def test_in_place(text):
    check_in_place(text, [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


def test_float32_stays_float32():
    for text in ['type: "ELU"', 'type: "Power" power_param { power: 2 }', 'type: "Swish"',
                 'type: "Exp"', 'type: "Clip" clip_param { min: 0 max: 1 }']:
        layer = make_layer(text, dtype=np.float32)
        bottom = make_blobs([RNG.uniform(0.1, 1, size=(2, 3))], np.float32)
        top = make_blobs([0], np.float32)
        layer.setup(bottom, top)
        run_forward(layer, bottom, top)
        top[0].diff[...] = 1
        layer.backward(top, [True], bottom)
        assert top[0].data.dtype == bottom[0].diff.dtype == np.float32, text


@pytest.mark.parametrize("text", ['type: "ELU" relu_param { negative_slope: 0.1 }',
                                  'type: "AbsVal" power_param { power: 2 }',
                                  'type: "Swish" elu_param { alpha: 1 }'])
def test_unused_parameter_is_an_error(text):
    with pytest.raises(ConfnetError, match="does not use it"):
        make_layer(text)
