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
    split_every_loop,
)


def test_relu():
    x = away_from(RNG.normal(size=(2, 3, 4, 5)), [0.0])
    check_layer('type: "ReLU"', [x], [np.maximum(x, 0)])


def test_relu_split_over_workers(monkeypatch):
    # Three workers each take a third of the elements (an uneven split of 7 x 11).
    split_every_loop(monkeypatch)
    x = away_from(RNG.normal(size=(7, 11)), [0.0])
    check_layer('type: "ReLU"', [x], [np.maximum(x, 0)])
    check_in_place('type: "ReLU"', [x])


def test_relu_leaky():
    x = away_from(RNG.normal(size=(3, 7)), [0.0])
    check_layer('type: "ReLU" relu_param { negative_slope: 0.25 engine: CAFFE }', [x],
                [np.maximum(x, 0) + 0.25 * np.minimum(x, 0)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("slope, in_place", [(0.0, False), (0.25, False), (0.0, True),
                                             (-0.5, True)])
def test_relu_gpu(device, slope, in_place):
    # Exact zeros included: the device path must give them the slope too.
    x = RNG.normal(size=(3, 5, 7))
    x[0, 0, :3] = 0
    check_layer_gpu(f'type: "ReLU" relu_param {{ negative_slope: {slope} }}', [x],
                    device=device, in_place=in_place, rtol=0, atol=0)


def test_relu_gradient_at_zero_takes_the_slope():
    layer, bottom, top = check_layer('type: "ReLU" relu_param { negative_slope: 0.5 }',
                                     [np.array([-1.0, 0.0, 2.0])], check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0.5, 0.5, 1.0])


@pytest.mark.parametrize("text", ['type: "ReLU"', 'type: "ReLU" relu_param { negative_slope: 0.1 }',
                                  'type: "ReLU" relu_param { negative_slope: -0.5 }'])
def test_in_place(text):
    check_in_place(text, [away_from(RNG.normal(size=(3, 4, 5)), [0.0])])


def test_unused_parameter_is_an_error():
    with pytest.raises(ConfnetError, match="does not use it"):
        make_layer('type: "ReLU" convolution_param { num_output: 3 }')
