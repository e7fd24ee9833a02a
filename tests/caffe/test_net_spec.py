"""caffe.net_spec: names (assigned and automatic), in-place layers, where keywords go, enum
values, errors, and that the written net builds."""

import numpy as np
import pytest

from confnet import caffe
from confnet.caffe import layers as L
from confnet.caffe import net_spec
from confnet.caffe import params as P
from confnet.caffe.proto import caffe_pb2
from confnet.errors import ConfnetError
from confnet.proto import io


def small_spec():
    n = caffe.NetSpec()
    n.data, n.label = L.Input(shape=[{"dim": [2, 1, 6, 6]}, {"dim": [2]}], ntop=2)
    n.conv = L.Convolution(n.data, kernel_size=3, num_output=4, weight_filler={"type": "xavier"},
                           param=[{"lr_mult": 1}, {"lr_mult": 2}])
    n.relu = L.ReLU(n.conv, in_place=True)
    n.pool = L.Pooling(n.relu, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip = L.InnerProduct(n.pool, num_output=3)
    n.loss = L.SoftmaxWithLoss(n.ip, n.label, loss_weight=0.5, normalization="VALID")
    n.silence = L.Silence(n.loss, ntop=0)
    return n


def test_netspec_writes_the_expected_layers():
    net = small_spec().to_proto()
    assert [(lp.name, lp.type, list(lp.bottom), list(lp.top)) for lp in net.layer] == [
        ("data", "Input", [], ["data", "label"]),
        ("conv", "Convolution", ["data"], ["conv"]),
        ("relu", "ReLU", ["conv"], ["conv"]),                 # in place: top is the bottom
        ("pool", "Pooling", ["conv"], ["pool"]),
        ("ip", "InnerProduct", ["pool"], ["ip"]),
        ("loss", "SoftmaxWithLoss", ["ip", "label"], ["loss"]),
        ("silence", "Silence", ["loss"], []),
    ]
    conv, pool, loss = net.layer[1], net.layer[3], net.layer[5]
    assert conv.convolution_param.kernel_size == [3]           # one value for a repeated field
    assert conv.convolution_param.weight_filler.type == "xavier"
    assert [p.lr_mult for p in conv.param] == [1, 2]
    assert pool.pooling_param.pool == caffe_pb2.PoolingParameter.MAX
    assert list(loss.loss_weight) == [0.5]                     # a LayerParameter field
    # Not in SoftmaxWithLoss's own message: found in the loss_param it reads (pycaffe fails).
    assert loss.loss_param.normalization == caffe_pb2.LossParameter.VALID
    assert list(net.layer[0].input_param.shape[1].dim) == [2]


def test_the_text_parses_back_and_the_net_builds():
    text = str(small_spec().to_proto())
    param = io.parse_text(text, caffe_pb2.NetParameter)
    net = caffe.Net(param, caffe.TRAIN)
    assert net.blobs["ip"].shape == (2, 3)
    net.blobs["label"].data[...] = [0, 2]
    loss = net.forward(data=np.ones((2, 1, 6, 6)))
    assert net.blob_loss_weights["loss"] == 0.5 and loss == {}   # Silence consumes the loss


def test_automatic_names():
    data = L.Input(shape={"dim": [1, 2]})
    a = L.InnerProduct(data, num_output=2)
    b = L.InnerProduct(a, num_output=2)
    relu = L.ReLU(b, in_place=True)
    net = caffe.to_proto(relu, L.TanH(a))
    assert [(lp.name, list(lp.top)) for lp in net.layer] == [
        ("Input1", ["Input1"]), ("InnerProduct1", ["InnerProduct1"]),
        ("InnerProduct2", ["InnerProduct2"]), ("ReLU1", ["InnerProduct2"]),
        ("TanH1", ["TanH1"])]
    assert relu.to_proto() == caffe.to_proto(relu)


def test_netspec_items_and_missing_names():
    n = caffe.NetSpec()
    n["data"] = L.Input(shape={"dim": [1]})
    assert n["data"] is n.data and list(n.tops) == ["data"]
    with pytest.raises(ConfnetError, match="has no top 'conv'; it has: data"):
        getattr(n, "conv")  # noqa: B009 - the attribute access is what is tested
    assert not hasattr(n, "conv")


def test_where_keywords_go():
    x = L.Input(shape={"dim": [1, 1, 4, 4]})
    deconv = L.Deconvolution(x, num_output=2, kernel_size=2, stride=2, name="up")
    data = L.Data(source="db", batch_size=4, backend="LMDB", transform_param={"scale": 0.5},
                  include={"phase": caffe.TRAIN}, ntop=2)
    net = caffe.to_proto(deconv, *data)
    up, layer = net.layer[1], net.layer[2]
    assert up.name == "up" and up.convolution_param.num_output == 2   # pycaffe: AttributeError
    assert layer.data_param.backend == caffe_pb2.DataParameter.LMDB  # an enum by name
    assert layer.transform_param.scale == 0.5 and layer.include[0].phase == caffe.TRAIN


def test_keyword_errors_name_the_layer():
    x = L.Input(shape={"dim": [1, 4]})
    with pytest.raises(ConfnetError, match=r"layer 'InnerProduct1' \(InnerProduct\): "
                                           r"num_ouput=3: no parameter message"):
        caffe.to_proto(L.InnerProduct(x, num_ouput=3))
    with pytest.raises(ConfnetError, match="'MEDIAN' is not a value of PoolMethod"):
        caffe.to_proto(L.Pooling(x, pool="MEDIAN", kernel_size=2))
    with pytest.raises(ConfnetError, match="bottom 0 is a ndarray, not the top of a layer"):
        L.ReLU(np.zeros(3))
    with pytest.raises(ConfnetError, match="ConvolutionParameter has no field 'kernal'"):
        caffe.to_proto(L.Convolution(x, convolution_param={"kernal": 3}))


def test_params_enum_values():
    assert P.Pooling.AVE == caffe_pb2.PoolingParameter.AVE
    assert P.Eltwise.SUM == caffe_pb2.EltwiseParameter.SUM
    with pytest.raises(ConfnetError, match="no message 'NoSuchParameter'"):
        getattr(P, "NoSuch")  # noqa: B009 - the attribute access is what is tested
    with pytest.raises(ConfnetError, match="PoolingParameter has no value 'MEDIAN'"):
        getattr(P.Pooling, "MEDIAN")  # noqa: B009 - the attribute access is what is tested


def test_deep_nets_need_no_deep_recursion():
    top = L.Input(shape={"dim": [1, 2]})
    for _ in range(1500):
        top = L.TanH(top)
    assert len(net_spec.to_proto(top).layer) == 1501
