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


def test_sigmoid():
    x = RNG.normal(size=(4, 6)) * 3
    check_layer('type: "Sigmoid"', [x], [1 / (1 + np.exp(-x))])


def test_sigmoid_saturates_without_overflow():
    x = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    with np.errstate(all="raise"):
        check_layer('type: "Sigmoid"', [x], [[0.0, 1 / (1 + np.exp(30)), 0.5,
                                               1 / (1 + np.exp(-30)), 1.0]], check_grad=False)


def test_in_place():
    check_in_place('type: "Sigmoid"', [away_from(RNG.normal(size=(3, 4, 5)), [0.0])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_place", [False, True])
def test_sigmoid_gpu(device, in_place):
    # Saturated inputs included: the device path must not overflow either.
    x = RNG.normal(size=(3, 7, 13)) * 3
    x[0, 0, :4] = [-800.0, -30.0, 30.0, 800.0]
    check_layer_gpu('type: "Sigmoid"', [x], device=device, in_place=in_place)


def test_unused_parameter_is_an_error():
    with pytest.raises(ConfnetError, match="does not use it"):
        make_layer('type: "Sigmoid" relu_param { negative_slope: 0.1 }')
