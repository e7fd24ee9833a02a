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

BASES = [(-1, 1, 0), (2, 0.5, 1.5), (10, 2, 3), (0.5, -1, 2)]


def log_text(base, scale, shift):
    return f'type: "Log" log_param {{ base: {base} scale: {scale} shift: {shift} }}'


@pytest.mark.parametrize("base, scale, shift", BASES)
def test_log(base, scale, shift):
    x = RNG.uniform(0.1, 0.9, size=(2, 3, 4))
    e = np.e if base == -1 else base
    check_layer(log_text(base, scale, shift), [x], [np.log(shift + scale * x) / np.log(e)])


@pytest.mark.parametrize("text", ['type: "Log" log_param { base: 0 }',
                                  'type: "Log" log_param { base: 1 }'])
def test_bad_base_is_an_error(text):
    with pytest.raises(ConfnetError, match="base"):
        make_layer(text).setup(make_blobs([np.ones(3)]), make_blobs([0]))


def test_in_place():
    check_in_place('type: "Log" log_param { shift: 3 }',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("base, scale, shift", BASES)
@pytest.mark.parametrize("in_place", [False, True])
def test_log_gpu(device, base, scale, shift, in_place):
    x = RNG.uniform(0.1, 0.9, size=(3, 7, 13))
    check_layer_gpu(log_text(base, scale, shift), [x], device=device, in_place=in_place)
