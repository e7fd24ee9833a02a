import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    device_backend,
    make_blobs,
    make_layer,
    running_on,
)

BOTTOM = (2, 3, 4, 5)


@pytest.mark.parametrize("param, shape", [
    ("shape { dim: 0 dim: -1 }", (2, 60)),
    ("shape { dim: 6 dim: 20 }", (6, 20)),
    ("shape { dim: 0 dim: 2 dim: -1 dim: 0 }", (2, 2, 6, 5)),
    ("shape { dim: -1 } axis: 1 num_axes: 2", (2, 12, 5)),
    ("shape { dim: 0 dim: 1 dim: -1 } axis: 1 num_axes: 2", (2, 3, 1, 4, 5)),
    ("shape { dim: 1 dim: 1 } axis: 2 num_axes: 0", (2, 3, 1, 1, 4, 5)),
    ("shape { dim: 1 } axis: 0 num_axes: 0", (1, 2, 3, 4, 5)),
    ("shape { dim: 1 } axis: -1 num_axes: 0", (2, 3, 4, 5, 1)),
    ("shape { dim: 2 dim: -1 } axis: -3", (2, 3, 2, 10)),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 }", BOTTOM),
])
def test_reshape(param, shape):
    x = RNG.normal(size=BOTTOM)
    _, bottom, top = check_layer(f'type: "Reshape" reshape_param {{ {param} }}', [x],
                                 [x.reshape(shape)])
    assert np.shares_memory(top[0].data, bottom[0].data)
    assert np.shares_memory(top[0].diff, bottom[0].diff)


@pytest.mark.parametrize("param, message", [
    ("shape { dim: -1 dim: -1 }", "more than one -1"),
    ("shape { dim: 7 dim: -1 }", "not divisible"),
    ("shape { dim: 2 dim: 3 }", "does not have the bottom's count 120"),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 dim: 0 }", "no axis 4 to copy"),
    ("shape { dim: -2 dim: -60 }", "below -1"),
    ("shape { dim: 1 } axis: 5", "axis 5 out of range"),
    ("shape { dim: 1 } axis: 2 num_axes: 3", "goes past the last axis"),
])
def test_bad_shapes(param, message):
    layer = make_layer(f'type: "Reshape" reshape_param {{ {param} }}', name="rs")
    with pytest.raises(ConfnetError, match=f"layer 'rs'.*{message}"):
        layer.setup([Blob(BOTTOM)], [Blob()])


def test_in_place_is_refused():
    blob = Blob((2, 3))
    with pytest.raises(ConfnetError, match="in place"):
        make_layer('type: "Reshape" reshape_param { shape { dim: -1 } }').setup([blob], [blob])


GPU_TEXT = 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 7 } }'


@pytest.mark.parametrize("device", DEVICES)
def test_gpu(device):
    check_layer_gpu(GPU_TEXT, [RNG.normal(size=(3, 5, 9, 7))], device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_top_views_the_device_memory(device):
    device_backend(device)
    with running_on(device):
        layer = make_layer(GPU_TEXT, dtype=np.float32)
        bottom, top = make_blobs([RNG.normal(size=(3, 5, 9, 7))], np.float32), [Blob()]
        layer.setup(bottom, top)
        layer.forward(bottom, top)
        assert top[0].gpu_data == bottom[0].gpu_data and top[0].gpu_diff == bottom[0].gpu_diff
