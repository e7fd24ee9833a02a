import numpy as np
import pytest

from confnet import rng
from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.layers import TEST, TRAIN
from tests.layers.harness import RNG, check_in_place, check_layer, make_layer


def keep_mask(shape, ratio, seed=0):
    """The draws Dropout makes: float32 uniform [0, 1) numbers from confnet.rng, kept where
    >= ratio (as the float32 field holds it)."""
    rng.seed(seed)
    return rng.get().random(shape, dtype=np.float32) >= np.float32(ratio)


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
