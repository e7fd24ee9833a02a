import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    device_backend,
    make_blobs,
    make_layer,
    run_forward,
    running_on,
)


def test_threshold():
    x = RNG.normal(size=(2, 3, 4))
    x[0, 0, :2] = 0.25
    want = (x > 0.25).astype(float)
    check_layer('type: "Threshold" threshold_param { threshold: 0.25 }', [x], [want],
                check_grad=False)


def test_threshold_has_no_backward():
    layer, bottom, top = check_layer('type: "Threshold"', [RNG.normal(size=(3, 4))],
                                     check_grad=False)
    assert not layer.allow_force_backward(0)
    layer.backward(top, [False], bottom)
    with pytest.raises(ConfnetError, match="has no backward"):
        layer.backward(top, [True], bottom)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_place", [False, True])
def test_threshold_gpu(device, in_place):
    # Values equal to the threshold included: they give 0 on both sides (x > threshold).
    x = RNG.normal(size=(3, 7, 13))
    x[0, 0, :3] = 0.25
    check_layer_gpu('type: "Threshold" threshold_param { threshold: 0.25 }', [x], device=device,
                    in_place=in_place, backward=False, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_threshold_has_no_backward_on_the_device(device):
    device_backend(device)
    with running_on(device):
        layer = make_layer('type: "Threshold"', dtype=np.float32)
        bottom, top = make_blobs([RNG.normal(size=(3, 4))], np.float32), make_blobs([0], np.float32)
        layer.setup(bottom, top)
        assert layer.on_device()
        run_forward(layer, bottom, top)
        layer.backward(top, [False], bottom)
        with pytest.raises(ConfnetError, match="has no backward"):
            layer.backward(top, [True], bottom)
