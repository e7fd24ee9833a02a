import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    away_from,
    check_in_place,
    check_layer,
    check_layer_gpu,
    make_layer,
)


def test_absval():
    x = away_from(RNG.normal(size=(2, 3, 4)), [0.0])
    check_layer('type: "AbsVal"', [x], [np.sqrt(x * x)])


def test_in_place():
    check_in_place('type: "AbsVal"',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_place", [False, True])
def test_absval_gpu(device, in_place):
    x = away_from(RNG.normal(size=(3, 7, 13)), [0.0])
    check_layer_gpu('type: "AbsVal"', [x], device=device, in_place=in_place)


def test_unused_parameter_is_an_error():
    with pytest.raises(ConfnetError, match="does not use it"):
        make_layer('type: "AbsVal" power_param { power: 2 }')
