"""caffe.Net (pycaffe's additions to confnet's Net), the solver classes and caffe.Layer."""

import sys
import textwrap

import numpy as np
import pytest

from confnet import caffe
from confnet.errors import ConfnetError
from confnet.layers import python_layer

DEPLOY = """
name: "small"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "tanh" type: "TanH" bottom: "ip" top: "ip" }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""

TRAIN = """
name: "train"
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "z"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss"
        loss_weight: 2 }
"""


@pytest.fixture
def deploy(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text(DEPLOY)
    return str(path)


def rows(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def test_constructor_forms(deploy, tmp_path):
    net = caffe.Net(deploy, caffe.TEST)
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    x = rows(2)
    expected = net.forward(data=x)["prob"].copy()
    for other in (caffe.Net(deploy, weights, caffe.TEST),
                  caffe.Net(deploy, caffe.TEST, weights=weights),
                  caffe.Net(deploy, caffe.TEST, level=0, stages=None, weights=weights)):
        assert other.phase == caffe.TEST
        np.testing.assert_array_equal(other.forward(data=x)["prob"], expected)


def test_names_and_loss_weights(tmp_path):
    path = tmp_path / "train.prototxt"
    path.write_text(TRAIN)
    net = caffe.Net(str(path), caffe.TRAIN)
    assert net._layer_names == ["in", "fc", "loss"]
    assert net._blob_names == ["x", "y", "z", "loss"]
    assert net.blob_loss_weights == {"x": 0, "y": 0, "z": 0, "loss": 2}


def test_forward_all_batches_and_trims_the_padding(deploy):
    """Five rows through a net of batch 2: three batches, the last padded, five rows back."""
    net = caffe.Net(deploy, caffe.TEST)
    x = rows(5)
    out = net.forward_all(data=x, blobs=["ip"])
    assert sorted(out) == ["ip", "prob"] and out["prob"].shape == (5, 4)
    assert net.blobs["data"].shape == (2, 3)          # the batch size stayed
    for i in range(5):
        one = net.forward(data=x[i:i + 1])["prob"][0]
        np.testing.assert_allclose(out["prob"][i], one, rtol=1e-6)


def test_forward_backward_all_returns_every_input_diff(deploy):
    net = caffe.Net(deploy, caffe.TEST)
    x, g = rows(3), np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    outs, diffs = net.forward_backward_all(data=x, prob=g, diffs=["ip"])
    assert outs["prob"].shape == (3, 4)
    assert diffs["data"].shape == (3, 3) and diffs["ip"].shape == (3, 4)
    for i in range(3):
        net.forward(data=x[i:i + 1])
        single = net.backward(prob=g[i:i + 1])["data"][0]
        np.testing.assert_allclose(diffs["data"][i], single, rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfnetError, match="'ip' is neither an input"):
        net.forward_backward_all(data=x, ip=g)


def test_forward_all_refuses_arrays_of_different_lengths(deploy):
    net = caffe.Net(deploy, caffe.TEST)
    with pytest.raises(ConfnetError, match="differ in length"):
        list(net._batch({"data": rows(3), "prob": rows(2)}))


def test_share_with_shares_data_not_diffs(deploy):
    a, b = caffe.Net(deploy, caffe.TEST), caffe.Net(deploy, caffe.TEST)
    b.share_with(a)
    assert np.shares_memory(a.params["ip"][0].data, b.params["ip"][0].data)
    assert not np.shares_memory(a.params["ip"][0].diff, b.params["ip"][0].diff)
    x = rows(2)
    np.testing.assert_array_equal(a.forward(data=x)["prob"], b.forward(data=x)["prob"])


def test_hdf5_save_and_load_whatever_the_name(deploy, tmp_path):
    pytest.importorskip("h5py")
    net = caffe.Net(deploy, caffe.TEST)
    path = str(tmp_path / "weights.bin")           # not .h5: still HDF5
    net.save_hdf5(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89HDF\r\n\x1a\n"
    other = caffe.Net(deploy, caffe.TEST)
    other.load_hdf5(path)
    for mine, theirs in zip(net.params["ip"], other.params["ip"]):
        np.testing.assert_array_equal(mine.data, theirs.data)


def test_set_input_arrays_feeds_memory_data(tmp_path):
    path = tmp_path / "mem.prototxt"
    path.write_text('layer { name: "m" type: "MemoryData" top: "data" top: "label" '
                    'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }')
    net = caffe.Net(str(path), caffe.TEST)
    data = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2)
    net.set_input_arrays(data, np.array([5, 6, 7, 8], np.float32))
    first, second = net.forward(), None
    np.testing.assert_array_equal(first["data"], data[:2])
    second = net.forward()
    np.testing.assert_array_equal(second["label"], [7, 8])
    plain = tmp_path / "plain.prototxt"
    plain.write_text(DEPLOY)
    with pytest.raises(ConfnetError, match="needs a MemoryData layer.*net.forward"):
        caffe.Net(str(plain), caffe.TEST).set_input_arrays(data, np.zeros(4))


def write_solver(tmp_path, extra=""):
    (tmp_path / "train.prototxt").write_text(TRAIN)
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "train.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 10 '
                    f'display: 0 random_seed: 1 snapshot_prefix: "{tmp_path}/snap" {extra}')
    return str(path)


def feed(net):
    net.blobs["x"].data[...] = np.eye(4, 3)
    net.blobs["y"].data[...] = [0, 1, 0, 1]


def test_solver_classes_and_get_solver(tmp_path):
    path = write_solver(tmp_path, 'type: "Adam"')
    solver = caffe.get_solver(path)
    assert type(solver).__name__ == "AdamSolver" and solver.type_name == "Adam"
    assert isinstance(solver, caffe.AdamSolver)
    assert isinstance(solver.net, caffe.Net) and solver.net.blob_loss_weights["loss"] == 2
    assert caffe.AdamSolver(path).param.type == "Adam"
    with pytest.raises(ConfnetError, match="type is 'Adam', but SGDSolver was asked for; use "
                                           "AdamSolver or caffe.get_solver"):
        caffe.SGDSolver(path)
    plain = write_solver(tmp_path)                  # no type: the class decides, as pycaffe
    for cls in (caffe.SGDSolver, caffe.NesterovSolver, caffe.AdaGradSolver,
                caffe.RMSPropSolver, caffe.AdaDeltaSolver, caffe.AdamSolver):
        assert cls(plain).param.type == cls.__name__[:-len("Solver")]


def test_solver_step_snapshot_restore(tmp_path):
    solver = caffe.SGDSolver(write_solver(tmp_path, "momentum: 0.9"))
    feed(solver.net)
    first = float(solver.net.forward()["loss"])
    solver.step(3)
    assert solver.iter == 3 and float(solver.net.forward()["loss"]) < first
    _model, state = solver.snapshot()
    weights = solver.net.params["fc"][0].data.copy()
    solver.step(2)
    solver.restore(state)
    assert solver.iter == 3
    np.testing.assert_array_equal(solver.net.params["fc"][0].data, weights)


def test_callbacks_run_around_forward_backward(tmp_path):
    """on_start sees last iteration's gradients cleared; on_gradients_ready sees this
    iteration's gradients before the update changes the weights."""
    solver = caffe.SGDSolver(write_solver(tmp_path))
    feed(solver.net)
    events = []
    weight = solver.net.params["fc"][0]

    def on_start():
        events.append(("start", solver.iter, float(np.abs(weight.diff).sum())))

    def on_ready():
        events.append(("ready", solver.iter, float(np.abs(weight.diff).sum())))
        events.append(("weights", weight.data.copy()))

    solver.add_callback(on_start, on_ready)
    before = weight.data.copy()
    solver.step(1)
    assert [e[0] for e in events] == ["start", "ready", "weights"]
    assert events[0][1:] == (0, 0.0) and events[1][1] == 0 and events[1][2] > 0
    np.testing.assert_array_equal(events[2][1], before)       # update not yet applied
    assert not np.array_equal(weight.data, before)


def test_apply_update_and_share_weights(tmp_path):
    solver = caffe.SGDSolver(write_solver(tmp_path))
    net = solver.net
    feed(net)
    net.clear_param_diffs()
    net.forward_backward()
    w, g = net.params["fc"][0].data.copy(), net.params["fc"][0].diff.copy()
    solver.apply_update()
    np.testing.assert_allclose(net.params["fc"][0].data, w - 0.1 * g, rtol=1e-6)
    other = caffe.Net(str(tmp_path / "train.prototxt"), caffe.TEST)
    solver.share_weights(other)
    assert np.shares_memory(other.params["fc"][0].data, net.params["fc"][0].data)


LAYER_MODULE = '''
import confnet.caffe as caffe


class Double(caffe.Layer):
    def setup(self, bottom, top):
        self.factor = float(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.factor * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.factor * top[0].diff


class NoBackward(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
'''


def python_net(tmp_path, layer):
    (tmp_path / "pycaffe_user_layers.py").write_text(textwrap.dedent(LAYER_MODULE))
    path = tmp_path / "py.prototxt"
    path.write_text(f"""force_backward: true
        layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 2 }} }} }}
        layer {{ name: "py" type: "Python" bottom: "data" top: "out"
                python_param {{ module: "pycaffe_user_layers" layer: "{layer}"
                               param_str: "3" }} }}""")
    return str(path)


def test_python_layer_subclassing_caffe_layer(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pycaffe_user_layers", raising=False)
    python_layer.allow_python_layers(False)
    path = python_net(tmp_path, "Double")
    net = caffe.Net(path, caffe.TRAIN)           # pycaffe's nets may load Python layers
    impl = net.layers[1].impl
    assert isinstance(impl, caffe.Layer) and impl.param_str == "3" and impl.phase == caffe.TRAIN
    assert impl.type == "Python" and impl.blobs == []
    np.testing.assert_array_equal(net.forward(data=[1, 2])["out"], [3, 6])
    np.testing.assert_array_equal(net.backward(out=[1, 1])["data"], [3, 3])
    with pytest.raises(ConfnetError, match="not allowed"):      # confnet.Net still asks
        caffe.Net.__mro__[1](path)
    no_backward = caffe.Net(python_net(tmp_path, "NoBackward"), caffe.TRAIN)
    no_backward.forward(data=[1, 2])
    with pytest.raises(ConfnetError, match="has no backward"):
        no_backward.backward(out=[1, 1])
