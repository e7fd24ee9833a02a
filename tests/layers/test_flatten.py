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


@pytest.mark.parametrize("field, shape", [
    ("", (2, 60)),
    ("flatten_param { axis: 2 }", (2, 3, 20)),
    ("flatten_param { axis: 1 end_axis: 2 }", (2, 12, 5)),
    ("flatten_param { axis: 0 end_axis: -1 }", (120,)),
    ("flatten_param { axis: -2 end_axis: -2 }", (2, 3, 4, 5)),
])
def test_flatten(field, shape):
    x = RNG.normal(size=(2, 3, 4, 5))
    _, bottom, top = check_layer(f'type: "Flatten" {field}', [x], [x.reshape(shape)])
    assert np.shares_memory(top[0].data, bottom[0].data)
    assert np.shares_memory(top[0].diff, bottom[0].diff)


def test_end_before_start():
    with pytest.raises(ConfnetError, match="comes after end_axis"):
        make_layer('type: "Flatten" flatten_param { axis: 2 end_axis: 1 }').setup(
            [Blob((2, 3, 4))], [Blob()])


def test_in_place_is_refused():
    blob = Blob((2, 3))
    with pytest.raises(ConfnetError, match="in place"):
        make_layer('type: "Flatten"').setup([blob], [blob])


GPU_TEXT = 'type: "Flatten" flatten_param { axis: 1 end_axis: 2 }'


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
