import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import (
    DEVICES,
    RNG,
    check_layer,
    check_layer_gpu,
    layer_text,
    make_blobs,
    make_layer,
)


def ip_text(**settings):
    return layer_text("InnerProduct", "inner_product_param", **settings)


def test_flattens_from_axis_1():
    x, w, b = RNG.normal(size=(3, 2, 2, 3)), RNG.normal(size=(5, 12)), RNG.normal(size=5)
    want = np.einsum("nk,mk->nm", x.reshape(3, 12), w) + b
    check_layer(ip_text(num_output=5), [x], [want], params=[w, b])


def test_axis_2():
    x, w, b = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(6, 20)), RNG.normal(size=6)
    want = np.einsum("abk,mk->abm", x.reshape(2, 3, 20), w) + b
    check_layer(ip_text(num_output=6, axis=2), [x], [want], params=[w, b])


def test_negative_axis_and_transpose_without_bias():
    x, w = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(4, 7))
    want = np.einsum("abk,km->abm", x, w)
    layer, _, _ = check_layer(ip_text(num_output=7, axis=-1, transpose="true", bias_term="false"),
                              [x], [want], params=[w])
    assert [b.shape for b in layer.blobs] == [(4, 7)]


def test_transpose_with_bias():
    x, w, b = RNG.normal(size=(4, 6)), RNG.normal(size=(6, 3)), RNG.normal(size=3)
    check_layer(ip_text(num_output=3, transpose="true"), [x], [x @ w + b], params=[w, b])


def test_fillers():
    text = ('type: "InnerProduct" inner_product_param { num_output: 4 '
            'weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.25 } }')
    layer, _, top = check_layer(text, [RNG.normal(size=(2, 3, 5))], check_grad=False)
    assert layer.blobs[0].shape == (4, 15) and top[0].shape == (2, 4)
    assert np.all(layer.blobs[1].data == 0.25)
    assert 0 < np.abs(layer.blobs[0].data).max() <= np.sqrt(3 / 15)


def test_float32_stays_float32():
    layer = make_layer(ip_text(num_output=5), dtype=np.float32)
    bottom, top = make_blobs([RNG.normal(size=(4, 8))], np.float32), make_blobs([0], np.float32)
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = RNG.normal(size=(5, 8))
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert top[0].data.dtype == bottom[0].diff.dtype == layer.blobs[0].diff.dtype == np.float32


def test_errors():
    with pytest.raises(ConfnetError, match="num_output must be set"):
        make_layer(ip_text(axis=1)).setup(make_blobs([np.zeros((2, 3))]), make_blobs([0]))
    with pytest.raises(ConfnetError, match="axis 3 is out of range"):
        make_layer(ip_text(num_output=2, axis=3)).setup(make_blobs([np.zeros((2, 3))]),
                                                        make_blobs([0]))
    layer, top = make_layer(ip_text(num_output=2)), make_blobs([0])
    layer.setup(make_blobs([np.zeros((2, 3, 4))]), top)
    with pytest.raises(ConfnetError, match="flattens to 15 inputs .* made for 12"):
        layer.reshape(make_blobs([np.zeros((2, 3, 5))]), top)


# -- the device path: GPU kernels against the CPU path in float32 ----------------------------
FILLED = {"weight_filler": '{ type: "gaussian" }', "bias_filler": '{ type: "gaussian" }'}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings, shape", [
    ({"num_output": 5}, (3, 2, 3, 2)),
    ({"num_output": 7, "axis": 2}, (2, 3, 4, 5)),
    ({"num_output": 7, "axis": -1, "transpose": "true", "bias_term": "false"}, (2, 3, 4)),
    ({"num_output": 9, "transpose": "true"}, (5, 37)),
    ({"num_output": 70}, (1, 33)),          # one row: thin products
    ({"num_output": 10}, (67, 50)),         # LeNet's ip2 shape, odd batch
])
def test_gpu_matches_cpu(device, settings, shape):
    check_layer_gpu(ip_text(**settings, **FILLED), [RNG.normal(size=shape)], device=device,
                    rtol=2e-5, atol=2e-5)
