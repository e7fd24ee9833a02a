"""Caffe interoperability: weights in every format Caffe has written (V0, V1, V2, HDF5), the
upgrade commands, weight copy by layer name, frozen layers, HDF5 snapshots and byte-identical
round trips."""

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format

from confnet.cli import main
from confnet.errors import ConfnetError
from confnet.layers import TEST
from confnet.net import Net
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from confnet.solver import get_solver
from tests.solver.test_snapshot import NET as TINY_NET  # Data, fc, ReLU, Dropout, loss

# The same small net in the three formats; weights given by legacy num/channels/height/width in
# the old ones, as Caffe wrote them before BlobShape existed.
V2_NET = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 3 kernel_size: 3
                            weight_filler { type: "gaussian" std: 0.5 }
                            bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "pool1" top: "pool1" }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""

V1_NET = """
name: "small"
input: "data" input_dim: 2 input_dim: 1 input_dim: 8 input_dim: 8
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         convolution_param { num_output: 3 kernel_size: 3 } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
         pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "relu1" type: RELU bottom: "pool1" top: "pool1" }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool1" top: "ip1"
         inner_product_param { num_output: 4 } }
layers { name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" }
"""

V0_NET = """
name: "small"
input: "data" input_dim: 2 input_dim: 1 input_dim: 8 input_dim: 8
layers { layer { name: "conv1" type: "conv" num_output: 3 kernelsize: 3 }
         bottom: "data" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 2 stride: 2 }
         bottom: "conv1" top: "pool1" }
layers { layer { name: "relu1" type: "relu" } bottom: "pool1" top: "pool1" }
layers { layer { name: "ip1" type: "innerproduct" num_output: 4 } bottom: "pool1" top: "ip1" }
layers { layer { name: "prob" type: "softmax" } bottom: "ip1" top: "prob" }
"""


def parse(text, cls=pb.NetParameter):
    return text_format.Parse(text, cls())


def legacy_blob(array):
    """A BlobProto in the pre-BlobShape form: 4-d num/channels/height/width, padded with 1s."""
    dims = (1,) * (4 - array.ndim) + array.shape
    return pb.BlobProto(num=dims[0], channels=dims[1], height=dims[2], width=dims[3],
                        data=array.ravel().tolist())


@pytest.fixture
def v2(tmp_path):
    """A net with random weights, its V2 .caffemodel, an input batch and its output."""
    net = Net(parse(V2_NET), TEST)
    path = tmp_path / "v2.caffemodel"
    net.save(str(path))
    x = np.random.default_rng(1).normal(size=(2, 1, 8, 8)).astype(np.float32)
    return net, str(path), x, net.forward(data=x)["prob"].copy()


def old_caffemodel(net, text, v0, path):
    """`text` (a V1 or V0 net) with the weights of `net` attached, written as binary."""
    old = parse(text)
    for connection in old.layers:
        holder = connection.layer if v0 else connection
        for blob in net.params.get(holder.name, []):
            holder.blobs.append(legacy_blob(blob.data))
    io.write_binary(old, path)
    return str(path)


@pytest.mark.parametrize("text, v0", [(V1_NET, False), (V0_NET, True)], ids=["V1", "V0"])
def test_old_binary_caffemodels_give_the_same_outputs(v2, tmp_path, text, v0):
    net, _, x, expected = v2
    path = old_caffemodel(net, text, v0, tmp_path / "old.caffemodel")
    message = pb.NetParameter.FromString(Path(path).read_bytes())
    assert message.layers and not message.layer   # really the old format
    fresh = Net(parse(V2_NET), TEST, weights=path)
    np.testing.assert_array_equal(fresh.forward(data=x)["prob"], expected)
    from_message = Net(parse(V2_NET), TEST)
    from_message.copy_from(message)
    np.testing.assert_array_equal(from_message.forward(data=x)["prob"], expected)
    # The old file is also a net definition: upgraded, it builds the same net.
    upgraded = Net(path, TEST, weights=path)
    assert [layer.type_name for layer in upgraded.layers] == [
        layer.type_name for layer in net.layers]
    np.testing.assert_array_equal(upgraded.forward(data=x)["prob"], expected)


# -- upgrade commands ----------------------------------------------------------------------------

def run(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_upgrade_net_text_and_binary(v2, tmp_path):
    net, _, x, expected = v2
    old_text = tmp_path / "v1.prototxt"
    old_text.write_text(V1_NET)
    assert "upgraded (text)" in run(["upgrade-net", str(old_text), str(tmp_path / "new.prototxt")])
    new = io.read_text(tmp_path / "new.prototxt", pb.NetParameter)
    assert not new.layers and not new.input
    assert [lp.type for lp in new.layer] == ["Input", "Convolution", "Pooling", "ReLU",
                                             "InnerProduct", "Softmax"]

    old_model = old_caffemodel(net, V0_NET, True, tmp_path / "v0.caffemodel")
    new_model = tmp_path / "new.caffemodel"
    assert "upgraded (binary)" in run(["upgrade-net", old_model, str(new_model)])
    weights = io.read_binary(new_model, pb.NetParameter)
    assert not weights.layers and weights.layer[1].name == "conv1" and weights.layer[1].blobs
    fresh = Net(parse(V2_NET), TEST, weights=str(new_model))
    np.testing.assert_array_equal(fresh.forward(data=x)["prob"], expected)

    again = run(["upgrade-net", str(new_model), str(tmp_path / "same.caffemodel")])
    assert "already in the current format" in again
    assert (tmp_path / "same.caffemodel").read_bytes() == new_model.read_bytes()


def test_upgrade_solver(tmp_path):
    old = tmp_path / "old_solver.prototxt"
    old.write_text('base_lr: 0.01 solver_type: ADAGRAD '
                   'net_param { layers { name: "r" type: RELU bottom: "x" top: "x" } }')
    assert "upgraded" in run(["upgrade-solver", str(old), str(tmp_path / "solver.prototxt")])
    new = io.read_text(tmp_path / "solver.prototxt", pb.SolverParameter)
    assert new.type == "AdaGrad" and not new.HasField("solver_type")
    assert new.net_param.layer[0].type == "ReLU" and not new.net_param.layers


@pytest.mark.parametrize("command", ["upgrade-net", "upgrade-solver"])
def test_upgrade_help_has_an_example(command):
    assert "Example:" in run([command, "--help"])


def test_upgrade_missing_file_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["upgrade-net", str(tmp_path / "no.prototxt"), "x"])
    assert result.exit_code == 1 and result.output.strip().endswith("no such file")


# -- copying weights by layer name ---------------------------------------------------------------

def test_shape_mismatch_is_a_clear_error(v2):
    _, path, _, _ = v2
    wider = Net(parse(V2_NET.replace("num_output: 4", "num_output: 5")), TEST)
    with pytest.raises(ConfnetError, match=r"cannot copy param 0 of layer 'ip1': shape 4 27 in "
                                           r"the weights, 5 27 in the net; .*rename it"):
        wider.copy_from(path)


def test_blob_count_mismatch_is_a_clear_error(v2):
    _, path, _, _ = v2
    no_bias = parse(V2_NET)
    no_bias.layer[4].inner_product_param.bias_term = False
    with pytest.raises(ConfnetError, match="layer 'ip1' has 2 parameter blobs, the net "
                                           "expects 1"):
        Net(no_bias, TEST, weights=path)


def test_renamed_layer_keeps_its_filler_values(v2):
    source, path, _, _ = v2
    renamed = Net(parse(V2_NET.replace('"ip1"', '"ip1_new"')), TEST)
    filled = [blob.data.copy() for blob in renamed.params["ip1_new"]]
    renamed.copy_from(path)
    for kept, blob in zip(filled, renamed.params["ip1_new"]):
        np.testing.assert_array_equal(blob.data, kept)
    for mine, theirs in zip(renamed.params["conv1"], source.params["conv1"]):
        np.testing.assert_array_equal(mine.data, theirs.data)


def test_lr_mult_zero_freezes_a_layer():
    net = parse(V2_NET)
    net.layer[0].input_param.shape.add(dim=[2])
    net.layer[0].top.append("label")
    net.layer[1].param.add(lr_mult=0)
    net.layer[1].param.add(lr_mult=0)
    del net.layer[-1]
    net.layer.add(name="loss", type="SoftmaxWithLoss", bottom=["ip1", "label"], top=["loss"])
    param = pb.SolverParameter(base_lr=0.1, lr_policy="fixed", momentum=0.9, weight_decay=0.01,
                               display=0, random_seed=2)
    param.net_param.CopyFrom(net)
    solver = get_solver(param)
    solver.net.blobs["data"].data[...] = np.random.default_rng(0).normal(size=(2, 1, 8, 8))
    solver.net.blobs["label"].data[...] = [1, 3]
    before = {name: [b.data.copy() for b in blobs] for name, blobs in solver.net.params.items()}
    solver.step(5)
    for old, blob in zip(before["conv1"], solver.net.params["conv1"]):
        np.testing.assert_array_equal(blob.data, old)
    assert not np.array_equal(before["ip1"][0], solver.net.params["ip1"][0].data)
    assert not solver.net.layer_need_backward[1]  # nothing below a frozen first layer learns


# -- round trips ---------------------------------------------------------------------------------

def test_saved_model_is_byte_identical_after_load_and_save(v2, tmp_path):
    _, path, _, _ = v2
    again = tmp_path / "again.caffemodel"
    Net(parse(V2_NET), TEST, weights=path).save(str(again))
    original = Path(path).read_bytes()
    assert again.read_bytes() == original
    assert io.read_binary(path, pb.NetParameter).SerializeToString() == original


# -- HDF5 ----------------------------------------------------------------------------------------

def test_hdf5_weights_in_caffes_layout(v2, tmp_path):
    h5py = pytest.importorskip("h5py")
    net, _, x, expected = v2
    path = tmp_path / "w.caffemodel.h5"
    net.save(str(path))
    with h5py.File(path, "r") as h5:
        assert sorted(h5["data"]) == sorted(net.layer_names)  # a group for every layer
        assert h5["data/conv1/0"].shape == (3, 1, 3, 3) and h5["data/conv1/1"].shape == (3,)
        assert h5["data/conv1/0"].dtype == np.float32 and len(h5["data/prob"]) == 0
        np.testing.assert_array_equal(h5["data/ip1/0"][()], net.params["ip1"][0].data)
        assert "diff" not in h5
    fresh = Net(parse(V2_NET), TEST, weights=str(path))
    np.testing.assert_array_equal(fresh.forward(data=x)["prob"], expected)


def test_hdf5_shared_parameters_are_saved_once(tmp_path):
    pytest.importorskip("h5py")
    text = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }
    layer { name: "a" type: "InnerProduct" bottom: "x" top: "y" param { name: "w" }
            inner_product_param { num_output: 3 bias_term: false
                                  weight_filler { type: "gaussian" } } }
    layer { name: "b" type: "InnerProduct" bottom: "y" top: "z" param { name: "w" }
            inner_product_param { num_output: 3 bias_term: false } }
    """
    net = Net(parse(text))
    path = str(tmp_path / "shared.caffemodel.h5")
    net.save(path, write_diff=True)
    import h5py
    with h5py.File(path, "r") as h5:
        assert list(h5["data/a"]) == ["0"] and list(h5["data/b"]) == []
        assert list(h5["diff/b"]) == ["0"]   # Caffe writes every diff
    fresh = Net(parse(text))
    fresh.copy_from(path)
    np.testing.assert_array_equal(fresh.params["b"][0].data, net.params["a"][0].data)


def hdf5_solver(db, prefix, snapshot=0):
    text = (f'net_param {{ {TINY_NET % db} }} base_lr: 0.05 lr_policy: "multistep" gamma: 0.5 '
            f'stepvalue: 3 stepvalue: 7 momentum: 0.9 weight_decay: 0.001 max_iter: 10 '
            f'display: 0 snapshot: {snapshot} snapshot_prefix: "{prefix}" random_seed: 7 '
            'snapshot_format: HDF5 snapshot_after_train: false')
    return get_solver(parse(text, pb.SolverParameter))


def test_hdf5_snapshot_layout_and_exact_resume(tiny_lmdb, tmp_path):
    h5py = pytest.importorskip("h5py")
    straight = hdf5_solver(tiny_lmdb, str(tmp_path / "a" / "net"))
    straight.step(10)

    first = hdf5_solver(tiny_lmdb, str(tmp_path / "b" / "net"), snapshot=5)
    first.step(5)
    model = tmp_path / "b" / "net_iter_5.caffemodel.h5"
    state = tmp_path / "b" / "net_iter_5.solverstate.h5"
    assert model.exists() and state.exists()
    assert not (tmp_path / "b" / "net_iter_5.caffemodel").exists()
    with h5py.File(state, "r") as h5:
        assert h5["iter"].shape == (1,) and h5["iter"].dtype == np.int32 and h5["iter"][0] == 5
        assert h5["current_step"][0] == 1
        assert h5["learned_net"][()].rstrip(b"\0").decode() == str(model)
        assert h5["learned_net"].id.get_type().get_strpad() == h5py.h5t.STR_NULLTERM
        assert sorted(h5["history"]) == ["0", "1", "2", "3"]
        assert h5["history/0"].shape == (10, 36)

    resumed = hdf5_solver(tiny_lmdb, str(tmp_path / "b" / "net"))
    resumed.restore(str(state))
    assert resumed.iter == 5
    resumed.step(5)
    for a, b in zip(straight.net.learnable_params, resumed.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)


def test_without_h5py_hdf5_is_a_one_line_error(v2, tiny_lmdb, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)   # import h5py now raises ImportError
    net, _, _, _ = v2
    with pytest.raises(ConfnetError, match=r"needs h5py: pip install confnet\[hdf5\]$"):
        net.save(str(tmp_path / "w.caffemodel.h5"))
    with pytest.raises(ConfnetError, match=r"^solver: snapshot_format HDF5 needs h5py"):
        hdf5_solver(tiny_lmdb, str(tmp_path / "net"))      # refused before training starts
    assert not list(tmp_path.glob("net_iter_*"))


def test_hdf5_layer_names_with_slashes(tmp_path):
    pytest.importorskip("h5py")
    text = V2_NET.replace('"conv1"', '"block/conv1"')
    net = Net(parse(text), TEST)
    path = str(tmp_path / "w.caffemodel.h5")
    net.save(path)
    fresh = Net(parse(text), TEST, weights=path)
    np.testing.assert_array_equal(fresh.params["block/conv1"][0].data,
                                  net.params["block/conv1"][0].data)


def test_restore_from_a_caffe_written_hdf5_state(tiny_lmdb, tmp_path):
    h5py = pytest.importorskip("h5py")
    solver = hdf5_solver(tiny_lmdb, str(tmp_path / "net"))
    model = str(tmp_path / "caffe_iter_3.caffemodel.h5")
    solver.net.params["fc1"][0].data[...] += 1   # differ from a fresh solver's fillers
    solver.net.save(model)
    history = [np.full(p.shape, i, np.float32) for i, p in
               enumerate(b.data for b in solver.net.learnable_params)]
    state = tmp_path / "caffe_iter_3.solverstate.h5"
    with h5py.File(state, "w") as h5:   # what Caffe writes: no confnet extras
        h5["iter"], h5["current_step"] = np.array([3], np.int32), np.array([0], np.int32)
        h5["learned_net"] = np.bytes_(model)
        for i, h in enumerate(history):
            h5[f"history/{i}"] = h
    resumed = hdf5_solver(tiny_lmdb, str(tmp_path / "net"))
    resumed.restore(str(state))
    assert resumed.iter == 3
    for mine, expected in zip(resumed.history, history):
        np.testing.assert_array_equal(mine.data, expected)
    for mine, saved in zip(resumed.net.learnable_params, solver.net.learnable_params):
        np.testing.assert_array_equal(mine.data, saved.data)
    resumed.step(1)
    assert resumed.iter == 4


# -- the fine-tuning example (models/lenet_finetune, tools/finetune_example.py) -------------------

def test_finetune_example_copies_all_but_the_new_classifier(tmp_path, monkeypatch):
    import importlib.util
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "finetune_example", root / "tools" / "finetune_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    from PIL import Image
    for part in ("train", "test"):      # a miniature data/mnist: two 28x28 PNGs per digit
        for digit in range(10):
            folder = tmp_path / "mnist" / part / str(digit)
            folder.mkdir(parents=True)
            for k in range(2):
                Image.fromarray(np.full((28, 28), 25 * digit + k, np.uint8)).save(
                    folder / f"{k}.png")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    example.build_lmdbs(str(tmp_path / "mnist"))
    from confnet.data.lmdb_io import LMDBReader
    with LMDBReader("data/mnist_5to9_test_lmdb") as db:
        labels = sorted(pb.Datum.FromString(value).label for value in db.read_batch(len(db)))
    assert labels == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]     # the digits 5-9, labelled 0-4

    models = root / "models" / "lenet_finetune"
    base = Net(str(models / "lenet_0to4_train_val.prototxt"), TEST)
    tuned = Net(str(models / "train_val.prototxt"), TEST)
    fillers = [blob.data.copy() for blob in tuned.params["ip2_5to9"]]
    base.save(str(tmp_path / "base.caffemodel"))
    tuned.copy_from(str(tmp_path / "base.caffemodel"))
    assert list(base.params) == ["conv1", "conv2", "ip1", "ip2"]
    for name in ("conv1", "conv2", "ip1"):
        for mine, theirs in zip(tuned.params[name], base.params[name]):
            np.testing.assert_array_equal(mine.data, theirs.data)
    for mine, kept in zip(tuned.params["ip2_5to9"], fillers):
        np.testing.assert_array_equal(mine.data, kept)
