"""The pycaffe-style Python API: Net and its blobs/params, forward(**inputs), backward(**diffs),
save, the solver object, and net surgery (models/lenet/net_surgery.py)."""

import importlib.util
import os

import numpy as np
import pytest

import confnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENET = os.path.join(ROOT, "models", "lenet")

DEPLOY = """
name: "small"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" }
                            bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "tanh1" type: "TanH" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
        inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""


@pytest.fixture
def deploy(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text(DEPLOY)
    return str(path)


def batch(n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def test_blobs_params_layers_inputs_outputs(deploy):
    net = confnet.Net(deploy, phase=confnet.TEST)
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert net.blobs["conv1"].data.shape == (2, 3, 6, 6)
    assert [p.data.shape for p in net.params["conv1"]] == [(3, 1, 3, 3), (3,)]
    assert list(net.params) == ["conv1", "ip1"]
    assert net.layer_dict["ip1"] is net.layers[3] and len(net.layers) == 5
    assert net.top_names["conv1"] == ["conv1"] and net.bottom_names["prob"] == ["ip1"]


def test_forward_sets_inputs_and_returns_outputs(deploy):
    net = confnet.Net(deploy, phase=confnet.TEST)
    x = batch()
    out = net.forward(data=x)
    assert list(out) == ["prob"] and out["prob"].shape == (2, 4)
    np.testing.assert_array_equal(net.blobs["data"].data, x)
    logits = net.blobs["ip1"].data
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["prob"], expected, rtol=1e-5)
    # Setting the blob by hand and calling forward() is the same thing.
    net.blobs["data"].data[...] = x
    np.testing.assert_array_equal(net.forward()["prob"], out["prob"])


def test_forward_reshapes_to_a_new_batch_size(deploy):
    net = confnet.Net(deploy, phase=confnet.TEST)
    two = net.forward(data=batch(2))["prob"].copy()
    five = net.forward(data=np.concatenate([batch(2), batch(3, seed=1)]))["prob"]
    assert five.shape == (5, 4)
    np.testing.assert_allclose(five[:2], two, rtol=1e-6)


def test_forward_start_end_and_extra_blobs(deploy):
    net = confnet.Net(deploy, phase=confnet.TEST)
    full = net.forward(data=batch())["prob"].copy()
    head = net.forward(end="ip1", blobs=["conv1"])
    assert sorted(head) == ["conv1", "ip1"]
    net.blobs["ip1"].data[...] *= 0     # start at prob: only the softmax runs
    assert np.allclose(net.forward(start="prob")["prob"], 0.25)
    net.forward(start="conv1")
    np.testing.assert_array_equal(net.blobs["prob"].data, full)


def test_forward_rejects_unknown_names(deploy):
    net = confnet.Net(deploy, phase=confnet.TEST)
    with pytest.raises(confnet.ConfnetError, match="'conv1' is not an input blob; the inputs "
                                                   "are: data"):
        net.forward(conv1=np.zeros((2, 3, 6, 6)))
    with pytest.raises(confnet.ConfnetError, match="has no layer 'fc9'"):
        net.forward(end="fc9")


def test_backward_returns_input_gradients(deploy):
    """d sum(prob * g) / d data against central differences, in float64."""
    net = confnet.Net(deploy, phase=confnet.TEST, dtype=np.float64)
    x, g = batch().astype(np.float64), np.random.default_rng(2).normal(size=(2, 4))
    net.forward(data=x)
    grad = net.backward(prob=g)
    assert list(grad) == ["data"] and grad["data"].shape == x.shape
    eps = 1e-6
    for index in [(0, 0, 3, 4), (1, 0, 0, 7), (1, 0, 5, 2)]:
        shifted = []
        for sign in (1, -1):
            y = x.copy()
            y[index] += sign * eps
            shifted.append(float((net.forward(data=y)["prob"] * g).sum()))
        assert grad["data"][index] == pytest.approx((shifted[0] - shifted[1]) / (2 * eps),
                                                    rel=1e-5, abs=1e-9)


def test_backward_end_and_extra_diffs(deploy):
    net = confnet.Net(deploy, phase=confnet.TEST)
    net.forward(data=batch())
    out = net.backward(prob=np.ones((2, 4)), end="ip1", diffs=["prob"])
    assert sorted(out) == ["conv1", "prob"]
    with pytest.raises(confnet.ConfnetError, match="'ip1' is not an output blob"):
        net.backward(ip1=np.ones((2, 4)))


def test_weights_argument_forms_and_save(deploy, tmp_path):
    net = confnet.Net(deploy, phase=confnet.TEST)
    net.params["conv1"][0].data[...] = 0.5          # surgery: replace a layer's weights
    path = str(tmp_path / "w.caffemodel")
    net.save(path)
    x = batch()
    expected = net.forward(data=x)["prob"].copy()
    for loaded in (confnet.Net(deploy, weights=path, phase=confnet.TEST),
                   confnet.Net(deploy, path, confnet.TEST)):      # pycaffe's older form
        assert loaded.phase == confnet.TEST
        assert (loaded.params["conv1"][0].data == 0.5).all()
        np.testing.assert_array_equal(loaded.forward(data=x)["prob"], expected)


def test_solver_object(tmp_path):
    (tmp_path / "train.prototxt").write_text("""
        layer { name: "in" type: "Input" top: "x" top: "y"
                input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "z"
                inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss" }
    """)
    (tmp_path / "solver.prototxt").write_text(
        'net: "train.prototxt" test_iter: 1 test_interval: 100 base_lr: 0.1 lr_policy: "fixed" '
        'max_iter: 6 display: 0 snapshot_after_train: false random_seed: 1 solver_mode: CPU')
    solver = confnet.get_solver(str(tmp_path / "solver.prototxt"))
    assert solver.iter == 0 and len(solver.test_nets) == 1
    solver.net.blobs["x"].data[...] = np.eye(4, 3)
    solver.net.blobs["y"].data[...] = [0, 1, 0, 1]
    first = solver.net.forward()["loss"].item()
    solver.step(2)
    assert solver.iter == 2
    solver.solve()
    assert solver.iter == 6 and solver.net.forward()["loss"] < first
    # Test nets share the train net's weights.
    assert np.shares_memory(solver.test_nets[0].params["fc"][0].data,
                            solver.net.params["fc"][0].data)


def load_surgery_module():
    spec = importlib.util.spec_from_file_location(
        "net_surgery", os.path.join(LENET, "net_surgery.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inner_product_to_convolution_surgery():
    """LeNet's ip layers as convolutions score every 28x28 window of a larger image."""
    surgery = load_surgery_module()
    net = confnet.Net(os.path.join(LENET, "deploy.prototxt"), phase=confnet.TEST)
    for blobs in net.params.values():     # deploy.prototxt has constant fillers: randomize
        for blob in blobs:
            blob.data[...] = np.random.default_rng(blob.count).normal(
                scale=0.1, size=blob.data.shape)
    full = confnet.Net(os.path.join(LENET, "deploy_full_conv.prototxt"), phase=confnet.TEST)
    surgery.make_fully_convolutional(net, full)

    image = np.random.default_rng(0).random((1, 1, 36, 44), dtype=np.float32)
    scores = full.forward(data=image)["prob"]
    assert scores.shape == (1, 10, 3, 5)
    for i in range(3):
        for j in range(5):
            window = image[:, :, 4 * i:4 * i + 28, 4 * j:4 * j + 28]
            expected = net.forward(data=window)["prob"][0]
            np.testing.assert_allclose(scores[0, :, i, j], expected, rtol=1e-4, atol=1e-6)


def test_backward_without_force_backward_says_so(deploy, tmp_path):
    """A deploy net without force_backward computes no input gradient: backward() refuses
    rather than returning zeros."""
    path = tmp_path / "plain.prototxt"
    path.write_text(DEPLOY.replace("force_backward: true", ""))
    net = confnet.Net(str(path), phase=confnet.TEST)
    net.forward(data=batch())
    with pytest.raises(confnet.ConfnetError, match="backward computes no gradient for data; "
                                                   "set 'force_backward: true'"):
        net.backward(prob=np.ones((2, 4)))


def test_weights_matching_no_layer_are_an_error_some_layers_a_warning(deploy, tmp_path, caplog):
    net = confnet.Net(deploy, phase=confnet.TEST)
    other = tmp_path / "other.prototxt"
    other.write_text(DEPLOY.replace('"conv1"', '"convA"').replace('"ip1"', '"ipA"'))
    confnet.Net(str(other), phase=confnet.TEST).save(str(tmp_path / "other.caffemodel"))
    with pytest.raises(confnet.ConfnetError, match="none of its 2 layers with weights "
                                                   r"\(convA, ipA\) matches a layer of net"):
        net.copy_from(str(tmp_path / "other.caffemodel"))
    half = tmp_path / "half.prototxt"
    half.write_text(DEPLOY.replace('"ip1"', '"ipA"'))
    confnet.Net(str(half), phase=confnet.TEST).save(str(tmp_path / "half.caffemodel"))
    assert net.copy_from(str(tmp_path / "half.caffemodel")) == ["conv1"]
    assert "copied the weights of 1 of the 2 layers with parameters (conv1)" in caplog.text
