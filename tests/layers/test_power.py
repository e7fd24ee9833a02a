import numpy as np
import pytest

from tests.layers.harness import (
    DEVICES,
    RNG,
    away_from,
    check_in_place,
    check_layer,
    check_layer_gpu,
)

POWERS = [(2.0, 0.5, 1.0), (3.0, -1.5, 0.0), (1.0, 2.0, -1.0), (0.5, 1.0, 3.0), (-1.5, 2.0, 4.0),
          (0.0, 2.0, 1.0), (2.0, 0.0, 1.5)]


def power_text(power, scale, shift):
    return f'type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}'


@pytest.mark.parametrize("power, scale, shift", POWERS)
def test_power(power, scale, shift):
    x = RNG.uniform(-1, 1, size=(2, 3, 4))
    base = shift + scale * x
    want = np.exp(power * np.log(np.abs(base))) * np.sign(base) ** power
    check_layer(power_text(power, scale, shift), [x], [want])


def test_power_defaults_are_identity():
    x = RNG.normal(size=(3, 4))
    check_layer('type: "Power"', [x], [x])


def test_in_place():
    check_in_place('type: "Power" power_param { power: 3 scale: 2 shift: 1 }',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("power, scale, shift", POWERS)
def test_power_gpu(device, power, scale, shift):
    x = RNG.uniform(-1, 1, size=(3, 7, 13))
    check_layer_gpu(power_text(power, scale, shift), [x], device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_power_gpu_in_place(device):
    check_layer_gpu(power_text(3.0, 2.0, 1.0), [RNG.uniform(-1, 1, size=(3, 7, 13))],
                    device=device, in_place=True)
