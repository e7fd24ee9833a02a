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


def test_in_place():
    check_in_place('type: "Clip" clip_param { min: -0.5 max: 0.5 }',
                   [away_from(RNG.uniform(-1, 1, size=(3, 4, 5)), [0.0, -0.5, 0.5])])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_place", [False, True])
def test_clip_gpu(device, in_place):
    # Values on the bounds included: they pass the gradient on both sides.
    x = away_from(RNG.normal(size=(3, 7, 13)), [-0.5, 0.75])
    x[0, 0, :2] = [-0.5, 0.75]
    check_layer_gpu('type: "Clip" clip_param { min: -0.5 max: 0.75 }', [x], device=device,
                    in_place=in_place, rtol=0, atol=0)
