import numpy as np
import pytest

from confnet import rng
from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.layers import TEST, TRAIN
from confnet.layers.dropout import keep_mask as layer_keep_mask
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_in_place,
    check_layer,
    check_layer_gpu,
    make_layer,
)


def mix32(h):
    """Wellons' lowbias32 on a Python int (the hash cuda/neuron.cu and dropout.py vectorize)."""
    h ^= h >> 16
    h = h * 0x7FEB352D & 0xFFFFFFFF
    h ^= h >> 15
    h = h * 0x846CA68B & 0xFFFFFFFF
    return h ^ h >> 16


def keep_mask(shape, ratio, seed=0):
    """The mask Dropout draws, one element at a time: a 64-bit seed from confnet.rng (seeded
    with ``seed``), element i kept when mix(mix(i ^ low word) ^ high word) >= ratio * 2^32."""
    rng.seed(seed)
    key = int(rng.get().integers(2**64, dtype=np.uint64))
    threshold = round(ratio * 2**32)
    keep = [mix32(mix32(i ^ key & 0xFFFFFFFF) ^ key >> 32) >= threshold
            for i in range(int(np.prod(shape)))]
    return np.array(keep).reshape(shape)


def test_train_scales_kept_values():
    x = RNG.normal(size=(4, 5, 6))
    mask = keep_mask(x.shape, 0.3)
    check_layer('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', [x],
                [x * mask / 0.7], phase=TRAIN)


def test_train_statistics():
    x = np.ones((400, 500))
    _, _, top = check_layer('type: "Dropout" dropout_param { dropout_ratio: 0.25 }', [x],
                            check_grad=False, seed=7)
    y = top[0].data
    assert abs((y == 0).mean() - 0.25) < 0.005
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    assert abs(y.mean() - 1) < 0.01


def test_mask_is_the_hash_of_seed_and_index():
    # The vectorized uint32 arithmetic against the Python-int reference, for a seed whose two
    # words both have the top bit set (any sign confusion would show).
    rng.seed(11)
    key = int(rng.get().integers(2**64, dtype=np.uint64)) | 1 << 63 | 1 << 31
    want = [mix32(mix32(i ^ key & 0xFFFFFFFF) ^ key >> 32) >= 2**31 for i in range(999)]
    np.testing.assert_array_equal(layer_keep_mask(999, key, 2**31), want)


def test_masks_of_successive_forwards_differ():
    layer = make_layer('type: "Dropout"')
    x = np.ones((50, 40))
    bottom, top = [Blob(x.shape, np.float64)], [Blob()]
    bottom[0].data[...] = x
    rng.seed(0)
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    first = top[0].data.copy()
    layer.forward(bottom, top)
    # Independent masks with p = 0.5 agree on about half of the elements.
    assert abs((first == top[0].data).mean() - 0.5) < 0.05


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("phase, in_place", [(TRAIN, False), (TRAIN, True), (TEST, False)])
def test_gpu_drops_the_same_elements(device, phase, in_place):
    # The kernel hashes the seed the host drew: the same mask, hence the same bits as the CPU.
    check_layer_gpu('type: "Dropout" dropout_param { dropout_ratio: 0.3 }',
                    [RNG.normal(size=(3, 7, 11))], device=device, phase=phase,
                    in_place=in_place, rtol=0, atol=0)


def test_test_phase_is_identity():
    x = RNG.normal(size=(3, 8))
    check_layer('type: "Dropout"', [x], [x], phase=TEST)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_in_place(phase):
    check_in_place('type: "Dropout" dropout_param { dropout_ratio: 0.6 }',
                   [RNG.normal(size=(4, 7))], phase)


@pytest.mark.parametrize("ratio", [1.0, -0.1])
def test_ratio_out_of_range(ratio):
    layer = make_layer(f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}', name="drop")
    with pytest.raises(ConfnetError, match="layer 'drop'.*dropout_ratio"):
        layer.setup([Blob((2,))], [Blob()])
