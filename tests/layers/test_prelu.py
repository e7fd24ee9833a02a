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
    device_backend,
    make_blobs,
    make_layer,
    run_forward,
    running_on,
)


def test_per_channel():
    x, a = away_from(RNG.normal(size=(2, 3, 4, 5)), [0.0]), RNG.normal(size=3)
    want = x.copy()
    for c in range(3):
        neg = x[:, c] < 0
        want[:, c][neg] = a[c] * x[:, c][neg]
    layer, _, _ = check_layer('type: "PReLU"', [x], [want], params=[a])
    assert layer.blobs[0].shape == (3,)


def test_channel_shared():
    x = away_from(RNG.normal(size=(2, 3, 5)), [0.0])
    layer, _, _ = check_layer('type: "PReLU" prelu_param { channel_shared: true }', [x],
                              [np.where(x > 0, x, -0.5 * x)], params=[-0.5])
    assert layer.blobs[0].shape == ()


def test_two_axes():
    x, a = away_from(RNG.normal(size=(4, 3)), [0.0]), np.array([0.1, 0.2, 0.3])
    check_layer('type: "PReLU"', [x], [np.where(x > 0, x, x * a)], params=[a])


def test_default_filler_is_a_quarter():
    x = away_from(RNG.normal(size=(2, 3, 4)), [0.0])
    layer, _, _ = check_layer('type: "PReLU"', [x], [np.where(x > 0, x, 0.25 * x)])
    np.testing.assert_array_equal(layer.blobs[0].data, 0.25)


def test_filler():
    text = 'type: "PReLU" prelu_param { filler { type: "constant" value: 0.5 } }'
    check_layer(text, [-np.ones((2, 3, 2))], [np.full((2, 3, 2), -0.5)], check_grad=False)


def test_in_place():
    check_in_place('type: "PReLU" prelu_param { filler { type: "gaussian" } }',
                   [away_from(RNG.normal(size=(2, 3, 4)), [0.0])])


def test_slope_gradient_accumulates():
    x = np.array([[-1.0, 2.0], [-3.0, 4.0]])
    layer, bottom, top = check_layer('type: "PReLU"', [x], check_grad=False)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    layer.backward(top, [False], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, [-8.0, 0.0])
    np.testing.assert_array_equal(bottom[0].diff, [[0.25, 1], [0.25, 1]])


def test_needs_two_axes():
    with pytest.raises(ConfnetError, match="at least 2 axes"):
        make_layer('type: "PReLU"').setup(make_blobs([np.zeros(4)]), make_blobs([0]))


GAUSSIAN = 'filler { type: "gaussian" }'


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, shared, in_place", [
    ((3, 5, 7, 3), False, False),
    ((3, 5, 7, 3), True, False),
    ((3, 5, 7, 3), False, True),
    ((3, 5, 7, 3), True, True),
    ((37, 5), False, False),     # two axes: inner 1
    ((5, 3, 9, 7), True, True),  # 315 elements a channel: more than one per thread
])
def test_prelu_gpu(device, shape, shared, in_place):
    # Gaussian slopes, negative ones included: in place, y then no longer tells the sign of x.
    shared_text = f"channel_shared: {str(shared).lower()}"
    x = away_from(RNG.normal(size=shape), [0.0])
    check_layer_gpu(f'type: "PReLU" prelu_param {{ {shared_text} {GAUSSIAN} }}', [x],
                    device=device, in_place=in_place)


@pytest.mark.parametrize("device", DEVICES)
def test_prelu_gpu_slope_gradient_only(device):
    x = away_from(RNG.normal(size=(3, 5, 7)), [0.0])
    check_layer_gpu(f'type: "PReLU" prelu_param {{ {GAUSSIAN} }}', [x], device=device,
                    no_grad=(0,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_gpu_slope_gradient_is_deterministic(device, shared):
    """The slope gradient (a reduction) has the same bits in every thread order and run, and
    accumulates over backward passes."""
    device_backend(device)
    x = RNG.normal(size=(5, 3, 9, 7)).astype(np.float32)
    dy = RNG.normal(size=x.shape).astype(np.float32)
    text = f'type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}'
    runs = []
    for order in ("forward", "reverse", "random", "random") if device == "emu" else (None,) * 2:
        with running_on(device, order):
            layer = make_layer(text, dtype=np.float32)
            bottom, top = make_blobs([x], np.float32), make_blobs([0], np.float32)
            layer.setup(bottom, top)
            layer.blobs[0].zero_diff()
            run_forward(layer, bottom, top)
            top[0].set_diff(dy)
            layer.backward(top, [True], bottom)
            once = layer.blobs[0].cpu_diff.copy()
            layer.backward(top, [False], bottom)
            runs.append((once, layer.blobs[0].cpu_diff.copy()))
    for once, twice in runs:
        np.testing.assert_array_equal(once, runs[0][0])
        np.testing.assert_array_equal(twice, runs[0][1])
    np.testing.assert_allclose(runs[0][1], 2 * runs[0][0], rtol=1e-6)
