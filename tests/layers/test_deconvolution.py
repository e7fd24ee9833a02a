import itertools

import numpy as np
import pytest

from confnet.errors import ConfnetError
from confnet.layers import TEST, deconvolution
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
)


def reference_deconv(x, w, b, pad, stride, dilation, group=1):
    """Scatter-add: every input cell adds x * its kernel into the output, one cell at a time."""
    channels, kernel = x.shape[1], w.shape[2:]
    outputs = w.shape[1] * group
    full = tuple(s * (size - 1) + d * (k - 1) + 1
                 for size, k, s, d in zip(x.shape[2:], kernel, stride, dilation))
    y = np.zeros((x.shape[0], outputs) + full)
    cg, mg = channels // group, outputs // group
    for i in itertools.product(*map(range, x.shape[2:])):
        for k in itertools.product(*map(range, kernel)):
            o = tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))
            for c in range(channels):
                g = c // cg
                y[(slice(None), slice(g * mg, (g + 1) * mg)) + o] += (
                    x[(slice(None), c) + i][:, None] * w[(c, slice(None)) + k])
    crop = tuple(slice(p, size - p) for p, size in zip(pad, full))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * len(kernel))
    return y


def deconv_text(**settings):
    return layer_text("Deconvolution", "convolution_param", **settings)


def check_deconv(x, w, b, text, pad, stride, dilation=None, group=1):
    dilation = dilation or (1,) * (x.ndim - 2)
    params = [w] if b is None else [w, b]
    expected = reference_deconv(x, w, b, pad, stride, dilation, group)
    return check_layer(text, [x], [expected], params=params)


def test_stride_two_upsampling():
    x, w, b = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(3, 2, 4, 4)), RNG.normal(size=2)
    _, _, top = check_deconv(x, w, b, deconv_text(num_output=2, kernel_size=4, stride=2, pad=1),
                             (1, 1), (2, 2))
    assert top[0].shape == (2, 2, 8, 10)  # 2 * (4 - 1) + 4 - 2


def test_rectangular_h_w_fields():
    x, w, b = RNG.normal(size=(1, 2, 3, 4)), RNG.normal(size=(2, 3, 2, 3)), RNG.normal(size=3)
    text = deconv_text(num_output=3, kernel_h=2, kernel_w=3, stride_h=3, stride_w=2, pad_w=1)
    check_deconv(x, w, b, text, (0, 1), (3, 2))


def test_dilation_group_no_bias():
    x, w = RNG.normal(size=(2, 4, 3, 4)), RNG.normal(size=(4, 3, 3, 2))
    text = deconv_text(num_output=6, kernel_size=3, group=2, dilation=2, stride=2, pad=1,
                       bias_term="false").replace("kernel_size: 3", "kernel_size: 3 kernel_size: 2")
    layer, _, _ = check_deconv(x, w, None, text, (1, 1), (2, 2), (2, 2), group=2)
    assert len(layer.blobs) == 1


def test_three_spatial_axes_and_two_bottoms():
    x1, x2 = RNG.normal(size=(1, 2, 2, 3, 2)), RNG.normal(size=(1, 2, 2, 3, 2))
    w, b = RNG.normal(size=(2, 2, 2, 3, 2)), RNG.normal(size=2)
    text = deconv_text(num_output=2, kernel_size=2, stride=2).replace(
        "kernel_size: 2", "kernel_size: 2 kernel_size: 3 kernel_size: 2")
    want = [reference_deconv(x, w, b, (0, 0, 0), (2, 2, 2), (1, 1, 1)) for x in (x1, x2)]
    check_layer(text, [x1, x2], want, params=[w, b])


def test_is_the_gradient_of_convolution():
    """<deconv(x), y> == <x, conv(y)> for the same weights and geometry, no bias."""
    settings = {"num_output": 2, "kernel_size": 3, "stride": 2, "pad": 1, "bias_term": "false"}
    x, w = RNG.normal(size=(2, 3, 4, 4)), RNG.normal(size=(3, 2, 3, 3))
    _, _, up = check_layer(deconv_text(**settings), [x], params=[w], check_grad=False)
    y = RNG.normal(size=up[0].shape)
    conv_text = deconv_text(**{**settings, "num_output": 3}).replace("Deconvolution",
                                                                     "Convolution")
    _, _, down = check_layer(conv_text, [y], params=[w], check_grad=False)
    assert down[0].shape == x.shape
    np.testing.assert_allclose(np.sum(up[0].data * y), np.sum(x * down[0].data))


def test_bilinear_filler_upsamples():
    text = ('type: "Deconvolution" convolution_param { num_output: 3 kernel_size: 4 stride: 2 '
            'pad: 1 group: 3 bias_term: false weight_filler { type: "bilinear" } }')
    x = np.ones((1, 3, 4, 4))
    layer, _, top = check_layer(text, [x], check_grad=False)
    assert layer.blobs[0].shape == (3, 1, 4, 4)
    # A constant image upsamples to the same constant away from the border.
    np.testing.assert_allclose(top[0].data[:, :, 1:-1, 1:-1], 1.0)


def test_fillers_and_param_shapes():
    text = ('type: "Deconvolution" convolution_param { num_output: 6 kernel_size: 3 group: 2 '
            'weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.5 } }')
    layer, _, top = check_layer(text, [RNG.normal(size=(1, 4, 5, 5))], check_grad=False)
    assert layer.blobs[0].shape == (4, 3, 3, 3)
    assert np.all(layer.blobs[1].data == 0.5)
    # xavier with fan_in = count / C = 3 * 3 * 3
    assert np.abs(layer.blobs[0].data).max() <= np.sqrt(3 / 27)
    assert top[0].shape == (1, 6, 7, 7)


def test_chunked_batch_equals_whole_batch(monkeypatch):
    x, w, b = RNG.normal(size=(5, 2, 3, 3)), RNG.normal(size=(2, 3, 3, 3)), RNG.normal(size=3)
    monkeypatch.setattr(deconvolution.convolution, "_COL_BUDGET", 3 * 9 * 9 * 8)
    layer = make_layer(deconv_text(num_output=3, kernel_size=3))
    layer.setup(make_blobs([x]), make_blobs([np.zeros(0)]))
    assert len(layer._chunks(5)) == 5
    check_deconv(x, w, b, deconv_text(num_output=3, kernel_size=3), (0, 0), (1, 1))


def test_float32_stays_float32():
    layer = make_layer(deconv_text(num_output=2, kernel_size=3, stride=2), dtype=np.float32)
    x = RNG.normal(size=(2, 3, 3, 3))
    bottom, top = make_blobs([x], np.float32), make_blobs([np.zeros(0)], np.float32)
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = RNG.normal(size=layer.blobs[0].shape)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert top[0].data.dtype == bottom[0].diff.dtype == layer.blobs[0].diff.dtype == np.float32
    want = reference_deconv(x, layer.blobs[0].data.astype(np.float64), None, (0, 0), (2, 2),
                            (1, 1))
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)


FILLED = {"weight_filler": '{ type: "gaussian" }', "bias_filler": '{ type: "gaussian" }'}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, shape", [
    ({"num_output": 3, "kernel_size": 4, "stride": 2, "pad": 1}, (2, 3, 5, 4)),
    ({"num_output": 3, "kernel_h": 2, "kernel_w": 3, "stride_h": 3, "stride_w": 2, "pad_w": 1},
     (2, 2, 3, 5)),
    ({"num_output": 6, "kernel_size": 3, "group": 2, "dilation": 2, "stride": 2, "pad": 1,
      "bias_term": "false"}, (3, 4, 3, 4)),
    ({"num_output": 2, "kernel_size": 3, "stride": 2, "pad": 1}, (2, 3, 7)),   # 1-D
])
def test_gpu_matches_cpu(device, settings, shape):
    check_layer_gpu(deconv_text(**settings, **FILLED), [RNG.normal(size=shape)], device=device,
                    rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dx_max_stride", [1, 3], ids=["column-forward", "implicit-forward"])
@pytest.mark.parametrize("settings, shape", [
    ({"num_output": 3, "kernel_size": 4, "stride": 2, "pad": 1}, (1, 3, 5, 4)),
    ({"num_output": 6, "kernel_h": 3, "kernel_w": 2, "group": 2, "dilation": 2, "pad": 1},
     (3, 4, 5, 6)),
    ({"num_output": 70, "kernel_size": 3, "stride": 2, "group": 2, "bias_term": "false"},
     (1, 34, 4, 3)),   # more than a 64-row tile of outputs, and of depth
])
def test_gpu_implicit_gemm(device, settings, shape, dx_max_stride, monkeypatch):
    # Every layer on the implicit path: forward as the convolution's implicit data gradient
    # (stride 1, or any with dx_max_stride 3; else the column forward), dW and dx implicit.
    monkeypatch.setattr(deconvolution.convolution, "_IMPLICIT_MIN_TILES", 0)
    monkeypatch.setattr(deconvolution.convolution, "_IMPLICIT_DX_MAX_STRIDE", dx_max_stride)
    check_layer_gpu(deconv_text(**settings, **FILLED), [RNG.normal(size=shape)], device=device,
                    rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_several_bottoms_test_phase_and_chunks(device, monkeypatch):
    x1, x2 = RNG.normal(size=(3, 2, 3, 4)), RNG.normal(size=(3, 2, 3, 4))
    text = deconv_text(num_output=3, kernel_size=3, stride=2, **FILLED)
    check_layer_gpu(text, [x1, x2], num_top=2, device=device, rtol=2e-5, atol=2e-5)
    check_layer_gpu(text, [x1], phase=TEST, device=device, rtol=2e-5, atol=2e-5)
    # A budget of one image's column buffer (M K P values): the batch runs image by image.
    monkeypatch.setattr(deconvolution.convolution, "_COL_BUDGET", 3 * 9 * 12 * 4)
    check_layer_gpu(text, [x1], device=device, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("settings, message", [
    ("num_output: 2", "kernel_size must be set"),
    ("kernel_size: 3", "num_output must be set"),
    ("num_output: 3 kernel_size: 3 group: 2", "group 2 must divide"),
    ("num_output: 2 kernel_size: 3 axis: 2", "axis: 2 is not supported"),
    ("num_output: 2 kernel_size: 2 pad: 5", "removes the whole output"),
])
def test_bad_settings_fail_clearly(settings, message):
    layer = make_layer(f'type: "Deconvolution" convolution_param {{ {settings} }}')
    with pytest.raises(ConfnetError, match=message):
        layer.setup(make_blobs([np.zeros((1, 2, 3, 3))]), make_blobs([np.zeros(0)]))
