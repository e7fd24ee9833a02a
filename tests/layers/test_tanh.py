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


def test_tanh():
    x = RNG.normal(size=(2, 3, 5)) * 2
    check_layer('type: "TanH"', [x], [(np.exp(2 * x) - 1) / (np.exp(2 * x) + 1)])


def test_in_place():
    check_in_place('type: "TanH"', [away_from(RNG.normal(size=(3, 4, 5)), [0.0])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_place", [False, True])
def test_tanh_gpu(device, in_place):
    x = RNG.normal(size=(3, 7, 13)) * 2
    x[0, 0, :2] = [-50.0, 50.0]
    check_layer_gpu('type: "TanH"', [x], device=device, in_place=in_place)


def test_unused_parameter_is_an_error():
    with pytest.raises(ConfnetError, match="does not use it"):
        make_layer('type: "TanH" dropout_param { dropout_ratio: 0.1 }')
