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


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_swish(beta):
    x = RNG.normal(size=(2, 3, 5)) * 3
    check_layer(f'type: "Swish" swish_param {{ beta: {beta} }}', [x],
                [x / (1 + np.exp(-beta * x))])


def test_in_place():
    check_in_place('type: "Swish" swish_param { beta: 1.5 }',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("beta, in_place", [(1.0, False), (0.5, True), (2.0, False)])
def test_swish_gpu(device, beta, in_place):
    x = RNG.normal(size=(3, 7, 13)) * 3
    check_layer_gpu(f'type: "Swish" swish_param {{ beta: {beta} }}', [x], device=device,
                    in_place=in_place)


def test_unused_parameter_is_an_error():
    with pytest.raises(ConfnetError, match="does not use it"):
        make_layer('type: "Swish" elu_param { alpha: 1 }')
