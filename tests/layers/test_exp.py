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
    make_blobs,
    make_layer,
)

BASES = [(-1, 1, 0), (2, 0.5, 1), (0.5, -2, 0.25), (-1, 3, -1)]


def exp_text(base, scale, shift):
    return f'type: "Exp" exp_param {{ base: {base} scale: {scale} shift: {shift} }}'


@pytest.mark.parametrize("base, scale, shift", BASES)
def test_exp(base, scale, shift):
    x = RNG.uniform(-1, 1, size=(2, 3, 4))
    e = np.e if base == -1 else base
    check_layer(exp_text(base, scale, shift), [x], [e ** (shift + scale * x)])


def test_bad_base_is_an_error():
    with pytest.raises(ConfnetError, match="base"):
        make_layer('type: "Exp" exp_param { base: -2 }').setup(make_blobs([np.ones(3)]),
                                                               make_blobs([0]))


def test_in_place():
    check_in_place('type: "Exp" exp_param { base: 2 scale: 0.5 }',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("base, scale, shift", BASES)
@pytest.mark.parametrize("in_place", [False, True])
def test_exp_gpu(device, base, scale, shift, in_place):
    x = RNG.uniform(-1, 1, size=(3, 7, 13))
    check_layer_gpu(exp_text(base, scale, shift), [x], device=device, in_place=in_place)
