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


def test_elu():
    x = away_from(RNG.normal(size=(2, 3, 4, 5)) * 2, [0.0])
    want = [v if v > 0 else 0.5 * (np.exp(v) - 1) for v in x.ravel()]
    check_layer('type: "ELU" elu_param { alpha: 0.5 }', [x], [np.reshape(want, x.shape)])


def test_elu_default_alpha():
    x = away_from(RNG.normal(size=(3, 7)), [0.0])
    check_layer('type: "ELU"', [x], [np.where(x > 0, x, np.exp(x) - 1)])


def test_in_place():
    check_in_place('type: "ELU" elu_param { alpha: 0.5 }',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("alpha, in_place", [(1.0, False), (0.5, True)])
def test_elu_gpu(device, alpha, in_place):
    x = away_from(RNG.normal(size=(3, 7, 13)) * 2, [0.0])
    check_layer_gpu(f'type: "ELU" elu_param {{ alpha: {alpha} }}', [x], device=device,
                    in_place=in_place)


def test_unused_parameter_is_an_error():
    with pytest.raises(ConfnetError, match="does not use it"):
        make_layer('type: "ELU" relu_param { negative_slope: 0.1 }')
