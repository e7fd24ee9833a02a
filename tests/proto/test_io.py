"""Tests for confnet.proto: the schema's Caffe field numbers and the io helpers."""

import numpy as np
import pytest

from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io

# (message, field, Caffe's field number): a wrong number breaks every Caffe file.
CAFFE_FIELD_NUMBERS = [
    (pb.LayerParameter, "convolution_param", 106),
    (pb.LayerParameter, "transform_param", 100),
    (pb.LayerParameter, "batch_norm_param", 139),
    (pb.LayerParameter, "swish_param", 147),
    (pb.LayerParameter, "clip_param", 148),
    (pb.LayerParameter, "blobs", 7),
    (pb.SolverParameter, "base_lr", 5),
    (pb.SolverParameter, "type", 40),
    (pb.SolverParameter, "solver_type", 30),
    (pb.SolverParameter, "layer_wise_reduce", 41),
    (pb.SolverParameter, "weights", 42),
    (pb.Datum, "encoded", 7),
    (pb.NetParameter, "layer", 100),
    (pb.NetParameter, "layers", 2),
    (pb.SolverState, "history", 3),
    (pb.BlobProto, "shape", 7),
    (pb.BlobProto, "double_data", 8),
    (pb.PoolingParameter, "round_mode", 13),
    (pb.V1LayerParameter, "blobs_lr", 7),
    (pb.V1LayerParameter, "param", 1001),
    (pb.V0LayerParameter, "hdf5_output_param", 1001),
]


@pytest.mark.parametrize("message, field, number", CAFFE_FIELD_NUMBERS)
def test_caffe_field_numbers(message, field, number):
    assert message.DESCRIPTOR.fields_by_name[field].number == number


def test_caffe_defaults_and_enums():
    assert pb.SolverParameter().random_seed == -1
    assert pb.SolverParameter().delta == pytest.approx(1e-8)
    assert pb.FillerParameter().type == "constant"
    assert pb.NetState().phase == pb.TEST
    assert pb.LossParameter().normalization == pb.LossParameter.VALID
    assert pb.V1LayerParameter.SOFTMAX_LOSS == 21
    assert pb.V1LayerParameter.DECONVOLUTION == 39


def test_confnet_extensions_use_numbers_from_10000():
    fields = pb.SolverState.DESCRIPTOR.fields_by_name
    assert fields["rng_state"].number == 10000
    assert fields["data_cursor"].number == 10001


NET_TEXT = """\
name: "tiny"
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 }
}
"""


def test_text_round_trip(tmp_path):
    net = io.parse_text(NET_TEXT, pb.NetParameter)
    path = tmp_path / "net.prototxt"
    io.write_text(net, path)
    again = io.read_text(path, pb.NetParameter)
    assert again == net
    assert list(again.layer[0].convolution_param.kernel_size) == [3]


def test_typo_reports_file_line_column(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text(NET_TEXT.replace("num_output", "num_ouptut"))
    with pytest.raises(ConfnetError, match=rf"^{path}:7:23: .*num_ouptut"):
        io.read_text(path, pb.NetParameter)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.prototxt"
    with pytest.raises(ConfnetError, match=f"^{path}: no such file$"):
        io.read_text(path, pb.NetParameter)
    with pytest.raises(ConfnetError, match="no such file"):
        io.read_binary(path, pb.NetParameter)


def test_binary_round_trip_and_garbage(tmp_path):
    path = tmp_path / "state.solverstate"
    state = pb.SolverState(iter=7, rng_state="{}")
    state.data_cursor.add(layer="mnist", position=12)
    io.write_binary(state, path)
    assert io.read_binary(path, pb.SolverState) == state
    assert [p.name for p in tmp_path.iterdir()] == ["state.solverstate"]  # no temp left
    path.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ConfnetError, match=f"^{path}: not a valid binary SolverState"):
        io.read_binary(path, pb.SolverState)


def test_blob_round_trip_with_diff():
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blob = io.array_to_blob(data, diff=-data)
    assert list(blob.shape.dim) == [2, 3, 4]
    np.testing.assert_array_equal(io.blob_to_array(blob), data)
    np.testing.assert_array_equal(io.blob_to_array(blob, diff=True), -data)
    out = pb.BlobProto(num=9)
    assert io.array_to_blob(np.ones(3), out=out) is out
    assert io.blob_shape(out) == (3,)


def test_blob_legacy_dims_and_double_data():
    blob = pb.BlobProto(num=1, channels=2, height=1, width=3, double_data=range(6))
    array = io.blob_to_array(blob)
    assert array.dtype == np.float32
    assert array.shape == (1, 2, 1, 3)
    np.testing.assert_array_equal(array.ravel(), np.arange(6))


def test_blob_count_mismatch():
    blob = pb.BlobProto(data=[1.0, 2.0])
    blob.shape.dim.extend([3])
    with pytest.raises(ConfnetError, match=r"shape \[3\] needs 3 data values, found 2"):
        io.blob_to_array(blob)


def test_binaryproto_round_trip(tmp_path):
    mean = np.random.default_rng(0).random((1, 3, 5, 5), dtype=np.float32)
    path = tmp_path / "mean.binaryproto"
    io.write_binaryproto(mean, path)
    np.testing.assert_array_equal(io.read_binaryproto(path), mean)


V1_NET = """\
name: "v1"
input: "data"
input_dim: 1 input_dim: 1 input_dim: 28 input_dim: 28
layers {
  name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 20 kernel_size: 5 }
}
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers {
  name: "ip1" type: INNER_PRODUCT bottom: "conv1" top: "ip1"
  inner_product_param { num_output: 10 }
}
layers { name: "loss" type: SOFTMAX_LOSS bottom: "ip1" bottom: "label" top: "loss" }
"""


def test_v1_net_upgrade(tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text(V1_NET)
    net = io.read_net(path)
    assert len(net.layers) == 0
    assert [layer.type for layer in net.layer] == [
        "Input", "Convolution", "ReLU", "InnerProduct", "SoftmaxWithLoss"]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 1, 28, 28]
    assert list(net.layer[0].top) == ["data"] and not net.input
    conv = net.layer[1]
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert conv.convolution_param.num_output == 20


def test_v1_binary_net_keeps_blobs(tmp_path):
    net = pb.NetParameter()
    layer = net.layers.add(name="ip", type=pb.V1LayerParameter.INNER_PRODUCT)
    io.array_to_blob(np.ones((2, 3)), out=layer.blobs.add())
    layer.data_param.scale = 0.5  # ignored: not a data layer
    path = tmp_path / "v1.caffemodel"
    io.write_binary(net, path)
    upgraded = io.read_net(path)
    np.testing.assert_array_equal(io.blob_to_array(upgraded.layer[0].blobs[0]), np.ones((2, 3)))


def test_data_transform_fields_move():
    net = io.parse_text(
        'layer { name: "d" type: "Data" top: "x" '
        'data_param { source: "db" scale: 0.5 mirror: true } }', pb.NetParameter)
    layer = io.upgrade_net(net).layer[0]
    assert layer.transform_param.scale == 0.5 and layer.transform_param.mirror
    assert not layer.data_param.HasField("scale")


def test_v0_net_upgrade_folds_padding():
    net = io.parse_text("""
        input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
        layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 blobs_lr: 1 }
                 bottom: "pad1" top: "conv1" }
        layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 }
                 bottom: "conv1" top: "pool1" }
    """, pb.NetParameter)
    layers = io.upgrade_net(net).layer
    assert [layer.type for layer in layers] == ["Input", "Convolution", "Pooling"]
    conv, pool = layers[1], layers[2]
    assert list(conv.bottom) == ["data"]
    assert list(conv.convolution_param.pad) == [2]
    assert list(conv.convolution_param.kernel_size) == [3]
    assert conv.param[0].lr_mult == 1
    assert pool.pooling_param.pool == pb.PoolingParameter.AVE
    assert pool.pooling_param.stride == 2


def test_v0_field_on_wrong_type_is_an_error():
    net = io.parse_text('layers { layer { name: "r" type: "relu" num_output: 3 } }',
                        pb.NetParameter)
    with pytest.raises(ConfnetError, match="'r' of type 'relu' cannot have field 'num_output'"):
        io.upgrade_net(net)


def test_solver_type_upgrade(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text('base_lr: 0.01\nsolver_type: NESTEROV\n')
    solver = io.read_solver(path)
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")
    path.write_text('solver_type: ADAM\ntype: "SGD"\n')
    with pytest.raises(ConfnetError, match="contradicts"):
        io.read_solver(path)
    path.write_text('solver_type: ADAM\ntype: "Adam"\n')
    assert io.read_solver(path).type == "Adam"


ZOO_STYLE_NET = """\
name: "LeNet"  # comments and Caffe's usual layout must parse unchanged
layer {
  name: "mnist" type: "Data" top: "data" top: "label"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 mean_value: 104 mean_value: 117 }
  data_param { source: "mnist_train_lmdb" batch_size: 64 backend: LMDB }
}
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param {
    num_output: 20 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" }
  }
}
layer {
  name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
"""


def test_zoo_style_prototxt_reads_unchanged(tmp_path):
    path = tmp_path / "lenet.prototxt"
    path.write_text(ZOO_STYLE_NET)
    net = io.read_net(path)
    assert net == io.parse_text(ZOO_STYLE_NET, pb.NetParameter)
    assert net.layer[0].include[0].phase == pb.TRAIN
    assert net.layer[0].data_param.backend == pb.DataParameter.LMDB
    assert net.layer[1].convolution_param.weight_filler.type == "xavier"
