import numpy as np
import pytest

from tests.layers.harness import DEVICES, RNG, check_in_place, check_layer, check_layer_gpu


def normalize(x, groups, eps=1e-9, variance=True):
    """Independent expectation: loop over the groups one by one."""
    rows = x.reshape(groups, -1)
    out = np.empty_like(rows)
    for g, row in enumerate(rows):
        centred = row - row.sum() / row.size
        std = np.sqrt((centred ** 2).sum() / row.size)
        out[g] = centred / (std + eps) if variance else centred
    return out.reshape(x.shape)


def test_per_channel():
    x = RNG.normal(size=(2, 3, 4, 5)) * 2 + 1
    check_layer('type: "MVN"', [x], [normalize(x, 6)])


def test_across_channels():
    x = RNG.normal(size=(2, 3, 4, 5)) + 0.5
    check_layer('type: "MVN" mvn_param { across_channels: true }', [x], [normalize(x, 2)])


def test_mean_only():
    x = RNG.normal(size=(2, 3, 4, 5))
    check_layer('type: "MVN" mvn_param { normalize_variance: false }', [x],
                [normalize(x, 6, variance=False)])


def test_mean_only_across_channels_three_axes():
    x = RNG.normal(size=(3, 2, 5))
    check_layer('type: "MVN" mvn_param { normalize_variance: false across_channels: true }',
                [x], [normalize(x, 3, variance=False)])


def test_large_eps_is_added_after_the_square_root():
    x = RNG.normal(size=(2, 3, 6))
    check_layer('type: "MVN" mvn_param { eps: 0.5 }', [x], [normalize(x, 6, eps=0.5)])


def test_two_axes():
    x = RNG.normal(size=(4, 3))
    check_layer('type: "MVN"', [x], [normalize(x, 12)])
    check_layer('type: "MVN" mvn_param { across_channels: true }', [x], [normalize(x, 4)])


def test_constant_group_has_a_finite_gradient():
    x = np.ones((1, 2, 3))
    x[0, 1] = [1.0, 2.0, 4.0]
    layer, bottom, top = check_layer('type: "MVN"', [x], check_grad=False)
    top[0].diff[...] = RNG.normal(size=x.shape)
    layer.backward(top, [True], bottom)
    assert np.all(np.isfinite(bottom[0].diff))


@pytest.mark.parametrize("text", ['type: "MVN"',
                                  'type: "MVN" mvn_param { normalize_variance: false }'])
def test_in_place(text):
    check_in_place(text, [RNG.normal(size=(2, 3, 4))])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 5, 9, 7), (5, 3), (7,)])
@pytest.mark.parametrize("settings", ["", "across_channels: true", "normalize_variance: false",
                                      "across_channels: true normalize_variance: false",
                                      "eps: 0.5"])
def test_gpu(device, shape, settings):
    # (3, 5, 9, 7) across channels: groups of 315 values, more than a block's 256 threads.
    # x - mean cancels: the mean's rounding (an ulp of x, in either order of addition) divided
    # by a small group's std reaches ~1e-6 in y, hence atol.
    text = f'type: "MVN" mvn_param {{ {settings} }}'
    check_layer_gpu(text, [RNG.normal(size=shape) * 2 + 1], device=device, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_constant_group_gpu(device):
    # A constant group (its mean exact in float32): std 0, y 0 and the std term of dx dropped.
    x = RNG.normal(size=(2, 3, 5))
    x[1, 2] = 2.0
    check_layer_gpu('type: "MVN"', [x], device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_in_place_gpu(device):
    check_layer_gpu('type: "MVN"', [RNG.normal(size=(3, 4, 5))], device=device, in_place=True)
