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


def test_bnll():
    x = RNG.normal(size=(4, 5)) * 4
    check_layer('type: "BNLL"', [x], [np.log(1 + np.exp(x))])


def test_bnll_large_inputs_do_not_overflow():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check_layer('type: "BNLL"', [x], [[0.0, np.exp(-40.0), np.log(2), 40.0, 1000.0]],
                    rtol=1e-12, check_grad=False)


def test_in_place():
    check_in_place('type: "BNLL"',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_place", [False, True])
def test_bnll_gpu(device, in_place):
    # Large inputs included: the device path must not overflow either.
    x = RNG.normal(size=(3, 7, 13)) * 4
    x[0, 0, :4] = [-1000.0, -40.0, 40.0, 1000.0]
    check_layer_gpu('type: "BNLL"', [x], device=device, in_place=in_place)
