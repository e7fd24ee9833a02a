"""caffe.coord_map: the per-layer maps, composing them, and the Crop of an FCN-style net."""

import numpy as np
import pytest

from confnet import caffe
from confnet.caffe import coord_map as cm
from confnet.caffe import layers as L
from confnet.caffe import params as P
from confnet.errors import ConfnetError


def test_layer_maps():
    x = L.Input(shape={"dim": [1, 1, 8, 8]})
    conv = L.Convolution(x, kernel_size=3, stride=2, pad=1, num_output=1)
    assert cm.coord_map(conv.fn) == (1, 0.5, 0)           # centre of window y sits at 2y
    pool = L.Pooling(x, pooling_param={"kernel_size": 2, "stride": 2, "pool": P.Pooling.MAX})
    assert cm.coord_map(pool.fn) == (1, 0.5, -0.25)       # read from pooling_param too
    dilated = L.Convolution(x, kernel_size=3, dilation=2, num_output=1)
    assert cm.coord_map(dilated.fn)[2] == -2              # a 5-wide kernel without padding
    deconv = L.Deconvolution(x, convolution_param={"kernel_size": 4, "stride": 2, "num_output": 1})
    assert cm.coord_map(deconv.fn) == (1, 2, 1.5)
    assert cm.coord_map(L.ReLU(x).fn) == (None, 1, 0)
    crop = L.Crop(x, x, axis=2, offset=[3])
    assert cm.coord_map(crop.fn)[0] == 1 and cm.coord_map(crop.fn)[2] == -3
    with pytest.raises(cm.UndefinedMapException, match="InnerProduct"):
        cm.coord_map(L.InnerProduct(x, num_output=1).fn)
    with pytest.raises(ConfnetError, match="legacy kernel_h"):
        cm.coord_map(L.Convolution(x, kernel_h=3, kernel_w=3, num_output=1).fn)


def test_compose_and_inverse():
    assert cm.compose((None, 1, 0), (1, 2, 3)) == (1, 2, 3)
    assert cm.compose((1, 2, 1), (None, 0.5, 4)) == (1, 1.0, 9)
    assert cm.inverse((1, 2, 3)) == (1, 0.5, -1.5)
    with pytest.raises(cm.AxisMismatchException):
        cm.compose((1, 1, 0), (2, 1, 0))


def fcn():
    n = caffe.NetSpec()
    n.data = L.Input(shape={"dim": [1, 1, 20, 20]})
    n.conv1 = L.Convolution(n.data, kernel_size=3, pad=2, num_output=2)     # 22
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.conv2 = L.Convolution(n.relu1, kernel_size=3, num_output=2)           # 20
    n.pool = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)  # 10
    n.score = L.Convolution(n.pool, kernel_size=1, num_output=2)
    n.up = L.Deconvolution(n.score, convolution_param={"kernel_size": 4, "stride": 2,
                                                            "num_output": 2, "bias_term": False})
    return n                                                                # up: 22


def test_crop_aligns_the_upsampled_scores_with_the_input():
    n = fcn()
    ax, a, b = cm.coord_map_from_to(n.up, n.data)
    assert ax == 1 and np.all(a == 1)
    n.crop = cm.crop(n.up, n.data)
    layer = n.to_proto().layer[-1]
    assert layer.type == "Crop" and list(layer.bottom) == ["up", "data"]
    assert layer.crop_param.axis == 2 and list(layer.crop_param.offset) == [int(-b[0])]
    net = caffe.Net(n.to_proto(), caffe.TEST)
    assert net.blobs["up"].shape[2:] == (22, 22) and net.blobs["crop"].shape[2:] == (20, 20)
    out = net.forward(data=np.random.default_rng(0).random((1, 1, 20, 20)), blobs=["up"])
    np.testing.assert_array_equal(out["crop"], out["up"][:, :, 1:21, 1:21])


def test_crop_offset_by_hand():
    """Input position x is conv1 position x + 1 (pad 2, kernel 3), conv2 position x, pooled
    position x / 2 - 1/4, and up position 2 (x / 2 - 1/4) + 3/2 = x + 1: data = up shifted
    by 1, so the crop offset is 1."""
    n = fcn()
    _ax, _a, b = cm.coord_map_from_to(n.up, n.data)
    assert float(b[0]) == -1.0
    assert cm.coord_map_from_to(n.data, n.up)[2] == 1.0
    assert list(n.to_proto().layer[-1].bottom) == ["score"]
    n.crop = cm.crop(n.up, n.data)
    assert list(n.to_proto().layer[-1].crop_param.offset) == [1]


def test_crop_errors():
    n = caffe.NetSpec()
    n.data = L.Input(shape={"dim": [1, 1, 8, 8]})
    n.small = L.Convolution(n.data, kernel_size=3, num_output=1)       # inside data
    n.half = L.Pooling(n.data, kernel_size=2, stride=2)
    assert list(caffe.to_proto(cm.crop(n.data, n.small)).layer[-1].crop_param.offset) == [1]
    with pytest.raises(ConfnetError, match="negative offset"):
        cm.crop(n.small, n.data)
    with pytest.raises(ConfnetError, match="differ in scale"):
        cm.crop(n.half, n.data)
    n.other = L.Input(shape={"dim": [1, 1, 8, 8]})
    with pytest.raises(ConfnetError, match="share no ancestor"):
        cm.coord_map_from_to(n.data, n.other)
