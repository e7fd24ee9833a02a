import numpy as np
import pytest
from google.protobuf import text_format

from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.layers import TEST, TRAIN
from confnet.net import Net
from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_in_place,
    check_layer,
    check_layer_gpu,
    device_backend,
    make_blobs,
    make_layer,
    run_forward,
    running_on,
)


def channel_stats(x):
    """Independent expectation: per-channel mean and biased variance, one channel at a time."""
    c = x.shape[1]
    means, variances = np.empty(c), np.empty(c)
    for k in range(c):
        values = x[:, k].ravel()
        means[k] = values.sum() / values.size
        variances[k] = ((values - means[k]) ** 2).sum() / values.size
    return means, variances


def normalize(x, means, variances, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - means.reshape(shape)) / np.sqrt(variances.reshape(shape) + eps)


def test_train_forward_and_gradient():
    x = RNG.normal(size=(3, 4, 2, 3)) * 2 + 1
    means, variances = channel_stats(x)
    layer, _, _ = check_layer('type: "BatchNorm"', [x], [normalize(x, means, variances, 1e-5)])
    assert not layer.use_global_stats


def test_train_two_axes_and_eps():
    x = RNG.normal(size=(5, 3))
    means, variances = channel_stats(x)
    check_layer('type: "BatchNorm" batch_norm_param { eps: 0.1 }', [x],
                [normalize(x, means, variances, 0.1)])


def test_explicit_use_global_stats_false_in_test_phase():
    x = RNG.normal(size=(4, 2, 3))
    means, variances = channel_stats(x)
    check_layer('type: "BatchNorm" batch_norm_param { use_global_stats: false }', [x],
                [normalize(x, means, variances, 1e-5)], phase=TEST)


def test_test_phase_uses_stored_statistics():
    x = RNG.normal(size=(2, 3, 4))
    mean_sum, var_sum, factor = RNG.normal(size=3), RNG.uniform(1, 2, size=3), 2.5
    want = normalize(x, mean_sum / factor, var_sum / factor, 1e-5)
    layer, bottom, top = check_layer('type: "BatchNorm"', [x], [want], phase=TEST,
                                     params=[mean_sum, var_sum, [factor]], check_grad=False)
    assert layer.use_global_stats
    # y is linear in x: dx = dy / sqrt(var + eps); the statistics stay as they were.
    dy = RNG.normal(size=x.shape)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff,
                               dy / np.sqrt(var_sum / factor + 1e-5)[None, :, None])
    np.testing.assert_array_equal(layer.blobs[0].data, mean_sum)
    np.testing.assert_array_equal(layer.blobs[2].data, [factor])


def test_zero_scale_factor_means_zero_statistics():
    x = RNG.normal(size=(2, 3))
    check_layer('type: "BatchNorm" batch_norm_param { use_global_stats: true }', [x],
                [x / np.sqrt(1e-5)], check_grad=False)


def test_moving_average_over_two_forwards():
    text = 'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.5 }'
    layer = make_layer(text, TRAIN)
    x1, x2 = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 3, 4)) * 3 + 1
    bottom, top = make_blobs([x1]), [Blob((), np.float64)]
    layer.setup(bottom, top)
    run_forward(layer, bottom, top)
    bottom[0].data[...] = x2
    run_forward(layer, bottom, top)
    (m1, v1), (m2, v2) = channel_stats(x1), channel_stats(x2)
    correction = 8 / 7  # m = 2 * 4 values per channel
    np.testing.assert_allclose(layer.blobs[2].data, [0.5 * 1 + 1])
    np.testing.assert_allclose(layer.blobs[0].data, 0.5 * m1 + m2)
    np.testing.assert_allclose(layer.blobs[1].data, correction * (0.5 * v1 + v2))
    # A TEST layer given these sums normalises with their weighted averages.
    want = normalize(x1, (0.5 * m1 + m2) / 1.5, correction * (0.5 * v1 + v2) / 1.5, 1e-5)
    check_layer(text, [x1], [want], phase=TEST, params=[b.data for b in layer.blobs],
                check_grad=False)


def test_statistics_get_lr_mult_zero():
    layer = make_layer('type: "BatchNorm"')
    layer.setup(make_blobs([RNG.normal(size=(2, 3))]), [Blob((), np.float64)])
    assert [spec.lr_mult for spec in layer.param.param] == [0, 0, 0]
    assert [b.shape for b in layer.blobs] == [(3,), (3,), (1,)]
    text = 'type: "BatchNorm" param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 }'
    layer = make_layer(text)
    layer.setup(make_blobs([RNG.normal(size=(2, 3))]), [Blob((), np.float64)])
    assert [spec.lr_mult for spec in layer.param.param] == [0, 0, 0]


def test_net_does_not_learn_the_statistics():
    net_text = '''
        layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }
    '''
    net = Net(text_format.Parse(net_text, pb.NetParameter()), TRAIN)
    assert net.params_lr == [0, 0, 0]
    assert net.param_need_backward == [[], [False, False, False]]


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_solver_leaves_the_statistics_to_the_layer(solver_type):
    net_text = """
        layer { name: "in" type: "Input" top: "x" top: "y"
                input_param { shape { dim: 6 dim: 3 } shape { dim: 6 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "z"
                inner_product_param { num_output: 2 bias_term: false
                                      weight_filler { type: "gaussian" } } }
        layer { name: "bn" type: "BatchNorm" bottom: "z" top: "z" }
        layer { name: "sc" type: "Scale" bottom: "z" top: "z" scale_param { bias_term: true } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss" }
    """
    text = (f'net_param {{ {net_text} }} base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 '
            f'weight_decay: 0.1 max_iter: 2 display: 0 random_seed: 1 type: "{solver_type}"')
    solver = get_solver(text_format.Parse(text, pb.SolverParameter()))
    net = solver.net
    x = RNG.normal(size=(6, 3))
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = [0, 1, 1, 0, 1, 0]
    scale_before = net.params["sc"][0].data.copy()
    weights = [net.params["fc"][0].data.copy()]
    solver.on_iteration.append(lambda s, loss: weights.append(net.params["fc"][0].data.copy()))
    solver.step(2)
    mean_sum, _, factor = (b.data for b in net.params["bn"])
    np.testing.assert_allclose(factor, [0.999 + 1], rtol=1e-6)
    # Each forward's batch mean, from the weights it saw, enters the running sum.
    means = [(x @ w.T.astype(np.float64)).mean(axis=0) for w in weights[:2]]
    np.testing.assert_allclose(mean_sum, 0.999 * means[0] + means[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(weights[0], weights[2])
    assert not np.allclose(net.params["sc"][0].data, scale_before)


def test_learning_rate_on_statistics_is_an_error():
    layer = make_layer('type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 1 }')
    with pytest.raises(ConfnetError, match="statistics, not learned"):
        layer.setup(make_blobs([RNG.normal(size=(2, 3))]), [Blob((), np.float64)])


def test_channel_change_is_an_error():
    layer = make_layer('type: "BatchNorm"')
    bottom, top = make_blobs([RNG.normal(size=(2, 3))]), [Blob((), np.float64)]
    layer.setup(bottom, top)
    with pytest.raises(ConfnetError, match="channels"):
        layer.reshape(make_blobs([RNG.normal(size=(2, 4))]), top)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_in_place(phase):
    check_in_place('type: "BatchNorm"', [RNG.normal(size=(3, 2, 4))], phase=phase)


def test_backward_survives_a_later_in_place_layer():
    x = RNG.normal(size=(3, 2, 4))
    layer = make_layer('type: "BatchNorm"')
    bottom, top = make_blobs([x]), [Blob((), np.float64)]
    layer.setup(bottom, top)
    run_forward(layer, bottom, top)
    dy = RNG.normal(size=x.shape)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    want = bottom[0].diff.copy()
    top[0].data[...] = 7.0  # what an in-place Scale or ReLU after it would do
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, want)


# -- device ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(5, 3, 9, 7), (7, 5), (6,)])
@pytest.mark.parametrize("settings", ["", "use_global_stats: true", "eps: 0.25"])
def test_gpu(device, shape, settings):
    # (5, 3, 9, 7): 315 values per channel, more than a block's 256 threads. atol: x - mean
    # cancels, and the mean's rounding differs with the order of addition (see test_mvn).
    text = f'type: "BatchNorm" batch_norm_param {{ {settings} }}'
    check_layer_gpu(text, [RNG.normal(size=shape) * 2 + 1], device=device, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_in_place_gpu(device, phase):
    check_layer_gpu('type: "BatchNorm"', [RNG.normal(size=(3, 5, 7))], device=device,
                    phase=phase, in_place=True)


def _two_forwards(text, xs, params):
    """Top and statistics (float32) after a forward of each of ``xs`` from ``params``."""
    layer = make_layer(text, TRAIN, np.float32)
    bottom, top = make_blobs(xs[:1], np.float32), [Blob((), np.float32)]
    layer.setup(bottom, top)
    for blob, value in zip(layer.blobs, params):
        blob.set_data(np.asarray(value, np.float32))
    tops = []
    for x in xs:
        bottom[0].set_data(np.asarray(x, np.float32))
        run_forward(layer, bottom, top)
        tops.append(top[0].cpu_data.copy())
    return tops + [b.cpu_data.copy() for b in layer.blobs]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("use_global_stats", ["false", "true"])
def test_statistics_on_the_device_follow_the_cpu(device, use_global_stats):
    # The running sums are updated on the device as on the CPU (and left alone with global
    # statistics, which normalise with the stored ones).
    device_backend(device)
    text = ('type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.75 '
            f'use_global_stats: {use_global_stats} }}')
    xs = [RNG.normal(size=(3, 5, 7)), RNG.normal(size=(3, 5, 7)) * 2 + 1]
    params = [RNG.normal(size=5), RNG.uniform(1, 2, size=5), [1.5]]
    want = _two_forwards(text, xs, params)
    with running_on(device):
        got = _two_forwards(text, xs, params)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"result {i}")
    if use_global_stats == "true":
        np.testing.assert_array_equal(got[4], [1.5])
    else:
        np.testing.assert_allclose(got[4], [1.5 * 0.75 ** 2 + 0.75 + 1], rtol=1e-6)
