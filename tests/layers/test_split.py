import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_blobs, make_layer


@pytest.mark.parametrize("tops", [1, 3])
def test_split(tops):
    x = RNG.normal(size=(2, 3, 4))
    _, bottom, top = check_layer('type: "Split"', [x], [x] * tops)
    for blob in top:
        assert np.shares_memory(blob.data, bottom[0].data)
        assert not np.shares_memory(blob.diff, bottom[0].diff)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tops", [1, 2, 3])
def test_split_gpu(device, tops):
    # The device sums the tops in the CPU's order: the same bits.
    check_layer_gpu('type: "Split"', [RNG.normal(size=(3, 37))], device=device, num_top=tops,
                    rtol=0, atol=0)


def test_backward_sums_the_tops():
    layer = make_layer('type: "Split"')
    bottom, top = make_blobs([np.zeros((2, 2))]), [Blob(), Blob()]
    layer.setup(bottom, top)
    top[0].diff[...], top[1].diff[...] = 1.5, 2.0
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.full((2, 2), 3.5))


def test_follows_a_reshaped_bottom():
    layer = make_layer('type: "Split"')
    bottom, top = make_blobs([np.zeros(3)]), [Blob(), Blob()]
    layer.setup(bottom, top)
    bottom[0].reshape((2, 5))
    bottom[0].data[...] = 4
    layer.reshape(bottom, top)
    assert top[1].shape == (2, 5) and np.all(top[1].data == 4)


def test_in_place_is_refused():
    blob = Blob((2,))
    with pytest.raises(ConfnetError, match="in place"):
        make_layer('type: "Split"').setup([blob], [blob, Blob()])
