"""ONNX export, checked against a runtime confnet did not write: onnxruntime runs the exported
model and every blob it computes must equal confnet's forward within 1e-4 (relative).

- Every deploy net in models/ (random weights, random inputs); the ImageNet nets at batch 1.
  GoogLeNet and ResNet-50 run at their full 224x224 input (their last pooling window is 7x7),
  where Caffe's ceil-rounded pooling gives more windows than ONNX's floor rounding would.
  VGG-16 and CaffeNet, whose first InnerProduct sizes itself from its input, run on smaller
  images so that the test does not move 138M random weights around: VGG-16 at 64x64, CaffeNet
  at 103x103, where each of its three poolings rounds up.
- One small net holding every other exportable layer type and the pooling cases where Caffe's
  AVE divisor matches neither of ONNX's count_include_pad modes.
"""

import os

import numpy as np
import pytest

import confnet
from confnet.errors import ConfnetError
from confnet.onnx_export import export
from confnet.proto import io
from tests.test_models import BIG, model_file, models_with, randomize

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-4


def run_both(net, model, batch, blobs, seed=1):
    """(confnet's, onnxruntime's) values of ``blobs`` for one random input batch."""
    g = np.random.default_rng(seed)
    feed = {name: g.uniform(-1, 1, (batch,) + net.blobs[name].shape[1:]).astype(np.float32)
            for name in net.inputs}
    net.forward(**feed)
    ours = {name: net.blobs[name].data.copy() for name in blobs}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    theirs = dict(zip(blobs, session.run(blobs, feed)))
    return ours, theirs


def assert_same(ours, theirs):
    """Every blob within RTOL of confnet's, relative to the element or (for elements near 0,
    where a different summation order shows most) to the blob's largest magnitude."""
    for name, expected in ours.items():
        got = theirs[name]
        assert got.shape == expected.shape, name
        scale = float(np.abs(expected).max()) or 1.0
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * 1e-2 * scale,
                                   err_msg=f"blob '{name}'")


def exported_blobs(net):
    return [name for name in net.blobs if name not in net.inputs]


SMALLER_INPUT = {"vgg16": 64, "caffenet": 103}


def deploy_net(model):
    param = io.read_net(model_file(model, "deploy"))
    if model in SMALLER_INPUT:
        shape = param.layer[0].input_param.shape[0]
        shape.dim[2] = shape.dim[3] = SMALLER_INPUT[model]
    return confnet.Net(param, confnet.TEST)


@pytest.mark.parametrize("model", models_with("deploy"))
def test_every_deploy_net_matches_onnxruntime(model):
    net = deploy_net(model)
    if model == "lstm_sequence":
        with pytest.raises(ConfnetError, match="layer 'lstm1' \\(LSTM\\): has no ONNX export"):
            export(net)
        return
    randomize(net)
    batch = 1 if model in BIG else 2
    blobs = exported_blobs(net) if model not in BIG else net.outputs + [
        name for name in net.blobs if name.startswith(("pool", "inception_5b/output"))]
    model_proto = export(net, outputs=blobs)
    assert [i.name for i in model_proto.graph.input] == net.inputs
    dim = model_proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "N"
    assert_same(*run_both(net, model_proto, batch, blobs))


EVERY_LAYER = """
name: "every_layer"
layer { name: "data" type: "Input" top: "data" top: "aux"
        input_param { shape { dim: 2 dim: 4 dim: 12 dim: 12 } shape { dim: 2 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 6 kernel_size: 3 pad: 2 dilation: 2 group: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" }
layer { name: "pool_pad" type: "Pooling" bottom: "conv" top: "pool_pad"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 } }
layer { name: "pool_ceil" type: "Pooling" bottom: "conv" top: "pool_ceil"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool_max" type: "Pooling" bottom: "conv" top: "pool_max"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool_global" type: "Pooling" bottom: "conv" top: "pool_global"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "lrn_across" type: "LRN" bottom: "pool_max" top: "lrn_across"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "lrn_within" type: "LRN" bottom: "pool_max" top: "lrn_within"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "deconv" type: "Deconvolution" bottom: "pool_pad" top: "deconv"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "crop" type: "Crop" bottom: "deconv" bottom: "data" top: "crop"
        crop_param { axis: 2 offset: 1 } }
layer { name: "cut" type: "Slice" bottom: "crop" top: "cut_a" top: "cut_b"
        slice_param { slice_point: 1 } }
layer { name: "sig" type: "Sigmoid" bottom: "cut_a" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "cut_a" top: "tanh" }
layer { name: "abs" type: "AbsVal" bottom: "cut_a" top: "abs" }
layer { name: "bnll" type: "BNLL" bottom: "cut_a" top: "bnll" }
layer { name: "elu" type: "ELU" bottom: "cut_a" top: "elu" elu_param { alpha: 0.7 } }
layer { name: "leaky" type: "ReLU" bottom: "cut_a" top: "leaky" relu_param { negative_slope: 0.1 } }
layer { name: "swish" type: "Swish" bottom: "cut_a" top: "swish" swish_param { beta: 1.5 } }
layer { name: "clip" type: "Clip" bottom: "cut_a" top: "clip" clip_param { min: -0.2 max: 0.3 } }
layer { name: "thresh" type: "Threshold" bottom: "cut_a" top: "thresh"
        threshold_param { threshold: 0.1 } }
layer { name: "power" type: "Power" bottom: "abs" top: "power"
        power_param { power: 1.5 scale: 2 shift: 0.5 } }
layer { name: "exp" type: "Exp" bottom: "cut_a" top: "exp" exp_param { base: 2 scale: 0.5 shift: 0.1 } }
layer { name: "log" type: "Log" bottom: "power" top: "log" log_param { base: 10 scale: 3 shift: 1 } }
layer { name: "prod" type: "Eltwise" bottom: "sig" bottom: "tanh" bottom: "exp" top: "prod"
        eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "abs" bottom: "elu" top: "max"
        eltwise_param { operation: MAX } }
layer { name: "sum" type: "Eltwise" bottom: "prod" bottom: "max" bottom: "log" top: "sum"
        eltwise_param { coeff: 0.5 coeff: -1 coeff: 1 } }
layer { name: "join" type: "Concat" bottom: "sum" bottom: "cut_b" bottom: "leaky" bottom: "swish"
        bottom: "clip" bottom: "thresh" bottom: "bnll" top: "join" }
layer { name: "tile" type: "Tile" bottom: "join" top: "tile" tile_param { axis: 1 tiles: 2 } }
layer { name: "drop" type: "Dropout" bottom: "tile" top: "tile" }
layer { name: "flat" type: "Flatten" bottom: "tile" top: "flat" flatten_param { axis: 2 } }
layer { name: "fc_rows" type: "InnerProduct" bottom: "flat" top: "fc_rows"
        inner_product_param { num_output: 5 axis: 2 } }
layer { name: "rows" type: "Reshape" bottom: "fc_rows" top: "rows"
        reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "bias" type: "Bias" bottom: "rows" top: "biased" }
layer { name: "fc" type: "InnerProduct" bottom: "biased" top: "fc"
        inner_product_param { num_output: 6 transpose: true } }
layer { name: "gate" type: "Scale" bottom: "fc" bottom: "aux" top: "gate" scale_param { axis: 0 } }
layer { name: "prob" type: "Softmax" bottom: "gate" top: "prob" }
"""


@pytest.fixture
def every_layer_net(tmp_path):
    path = tmp_path / "every_layer.prototxt"
    path.write_text(EVERY_LAYER)
    net = confnet.Net(str(path), confnet.TEST)
    randomize(net, seed=3)
    return net


def test_every_exportable_layer_type_matches_onnxruntime(every_layer_net):
    net = every_layer_net
    types = {layer.type_name for layer in net.layers}
    from confnet.onnx_export import CONVERTERS
    assert set(CONVERTERS) <= types | {"Split"}, set(CONVERTERS) - types
    blobs = exported_blobs(net)
    model = export(net, outputs=blobs)
    assert_same(*run_both(net, model, 3, blobs))


def test_pooling_divisors_need_every_onnx_mode(every_layer_net):
    """pool_pad needs count_include_pad=1 (window inside the padding), pool_ceil a correction
    (its last window hangs past the padding), pool_global count_include_pad=0."""
    nodes = {n.name: n for n in export(every_layer_net).graph.node}
    modes = {name: next(a.i for a in nodes[name].attribute if a.name == "count_include_pad")
             for name in ("pool_pad", "pool_ceil", "pool_global")}
    assert modes == {"pool_pad": 1, "pool_ceil": 1, "pool_global": 0}
    assert "pool_ceil/divisor" in nodes and "pool_pad/divisor" not in nodes


def test_fixed_batch_and_file(tmp_path):
    net = confnet.Net(model_file("lenet", "deploy"), confnet.TEST)
    randomize(net)
    path = tmp_path / "lenet.onnx"
    model = export(net, str(path), batch=3, opset=13)
    loaded = onnx.load(str(path))
    assert loaded.opset_import[0].version == 13
    assert [d.dim_value for d in loaded.graph.input[0].type.tensor_type.shape.dim] == [3, 1, 26,
                                                                                       26]
    assert {t.name for t in loaded.graph.initializer} >= {"conv1/0", "conv1/1", "ip2/0"}
    assert [n.name for n in loaded.graph.node][:2] == ["conv1", "pool1"]
    assert_same(*run_both(net, model, 3, net.outputs))


def test_errors_name_the_layer(tmp_path):
    path = tmp_path / "dummy.prototxt"
    path.write_text('layer { name: "d" type: "DummyData" top: "d" '
                    'dummy_data_param { shape { dim: 1 dim: 3 } } }')
    net = confnet.Net(str(path), confnet.TEST)
    path.unlink()
    with pytest.raises(ConfnetError, match="no Input layer"):
        export(net)
    net = confnet.Net(model_file("lenet", "deploy"), confnet.TRAIN)
    with pytest.raises(ConfnetError, match="TEST phase"):
        export(net)
    net = confnet.Net(model_file("lenet", "deploy"), confnet.TEST)
    with pytest.raises(ConfnetError, match="opset 7"):
        export(net, opset=7)
    with pytest.raises(ConfnetError, match="no blob 'nope'|no blob nope"):
        export(net, outputs=["nope"])
    assert not os.listdir(tmp_path)


def test_large_weights_go_to_a_data_file(tmp_path, monkeypatch):
    """Past the size limit the weights go to OUT.onnx.data (rewritten, not appended to, on a
    second export), and the model still runs."""
    monkeypatch.setattr("confnet.onnx_export._EXTERNAL_DATA_BYTES", 1000)
    net = confnet.Net(model_file("lenet", "deploy"), confnet.TEST)
    randomize(net)
    path = str(tmp_path / "lenet.onnx")
    with pytest.raises(ConfnetError, match="give a file"):
        export(net)
    for _ in range(2):
        export(net, path)
    # onnx keeps tensors under 1 KiB (here the biases) inside the model
    weights = sum(b.data.nbytes for blobs in net.params.values() for b in blobs
                  if b.data.nbytes >= 1024)
    assert os.path.getsize(path + ".data") == weights
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 26, 26)).astype(np.float32)
    np.testing.assert_allclose(session.run(["prob"], {"data": x})[0],
                               net.forward(data=x)["prob"], rtol=RTOL, atol=1e-7)
