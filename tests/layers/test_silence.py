import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    device_backend,
    make_blobs,
    make_layer,
    running_on,
)


def test_no_tops_and_zero_gradients():
    x, y = RNG.normal(size=(2, 3)), RNG.normal(size=(4,))
    check_layer('type: "Silence"', [x, y], [])


def test_backward_overwrites_only_the_requested_diffs():
    layer = make_layer('type: "Silence"')
    bottom = make_blobs([RNG.normal(size=(2, 3)), RNG.normal(size=(5,))])
    layer.setup(bottom, [])
    layer.forward(bottom, [])
    for blob in bottom:
        blob.diff[...] = 7.0
    layer.backward([], [True, False], bottom)
    assert np.all(bottom[0].diff == 0) and np.all(bottom[1].diff == 7.0)


def test_needs_a_bottom_and_no_top():
    with pytest.raises(ConfnetError, match="bottom"):
        make_layer('type: "Silence"').setup([], [])
    with pytest.raises(ConfnetError, match="top"):
        make_layer('type: "Silence"').setup(make_blobs([np.zeros(2)]), make_blobs([0.0]))


@pytest.mark.parametrize("device", DEVICES)
def test_backward_zeroes_on_the_device(device):
    device_backend(device)
    with running_on(device) as backend:
        layer = make_layer('type: "Silence"', dtype=np.float32)
        bottom = make_blobs([RNG.normal(size=(3, 5)), RNG.normal(size=(7,))], np.float32)
        layer.setup(bottom, [])
        for blob in bottom:
            blob.set_diff(7.0)
        backend.copies.reset()
        layer.forward(bottom, [])
        layer.backward([], [True, False], bottom)
        assert backend.copies.dtoh == 0 and backend.copies.htod == 0
        assert np.all(bottom[0].cpu_diff == 0) and np.all(bottom[1].cpu_diff == 7.0)
