"""ReLU fusion (confnet/net.py ``fused_relus``): on the device, a Convolution or InnerProduct
applies the in-place ReLU that first reads its top in its product's epilogue, and that ReLU's
forward does nothing. The fused device net must give the unfused CPU net's blobs and gradients,
and nets where fusion would change a result (leaky ReLU, ReLU not in place, another reader
first, a 3-D convolution) must not be fused."""

from types import SimpleNamespace

import numpy as np
import pytest

import confnet
from confnet import rng
from confnet.gpu import launch
from confnet.layers import convolution
from confnet.net import fused_relus
from tests.layers.harness import DEVICES, RNG, device_backend, running_on

FILL = 'weight_filler { type: "gaussian" std: 0.4 } bias_filler { type: "gaussian" std: 0.4 }'


def net_text(relu1_top="conv1", relu1_param="", between="", shape=(3, 4, 9, 8),
             conv1="kernel_h: 3 kernel_w: 2 pad: 1 group: 2"):
    """Input -> conv1 (-> between) -> relu1 -> conv2 (1x1, groups) -> relu2 -> ip1 -> relu3 ->
    ip2, every ReLU in place unless ``relu1_top`` says otherwise."""
    dims = " ".join(f"dim: {d}" for d in shape)
    return f"""
    force_backward: true
    layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}
    layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
             convolution_param {{ num_output: 6 {conv1} {FILL} }} }}
    {between}
    layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "{relu1_top}" {relu1_param} }}
    layer {{ name: "conv2" type: "Convolution" bottom: "{relu1_top}" top: "conv2"
             convolution_param {{ num_output: 4 kernel_size: 1 group: 2 {FILL} }} }}
    layer {{ name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }}
    layer {{ name: "ip1" type: "InnerProduct" bottom: "conv2" top: "ip1"
             inner_product_param {{ num_output: 7 {FILL} }} }}
    layer {{ name: "relu3" type: "ReLU" bottom: "ip1" top: "ip1" }}
    layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
             inner_product_param {{ num_output: 3 {FILL} }} }}
    """


def make_net(text, tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    rng.seed(0)
    return confnet.Net(str(path), confnet.TRAIN)


def run(net, x, dy):
    """Every blob's data, the input's and every parameter's gradient after forward + backward."""
    net.clear_param_diffs()
    net.forward(data=x)
    net.backward(ip2=dy)
    out = {f"{name} data": np.array(blob.cpu_data) for name, blob in net.blobs.items()}
    out["data diff"] = np.array(net.blobs["data"].cpu_diff)
    out.update({f"{name} param {k} diff": np.array(blob.cpu_diff)
                for name, layer in zip(net.layer_names, net.layers)
                for k, blob in enumerate(layer.blobs)})
    return out


def check_device_matches_cpu(net, device, shape, relu_launches):
    """The net on ``device`` (every emulator thread order) against its CPU run; the device runs
    launch relu_forward ``relu_launches`` times each."""
    x = RNG.normal(size=shape).astype(np.float32)
    dy = RNG.normal(size=net.blobs["ip2"].shape).astype(np.float32)
    want = run(net, x, dy)
    launched = []
    original = launch.launch

    def recording(cu_file, name, *args, **kwargs):
        launched.append(name)
        return original(cu_file, name, *args, **kwargs)

    for order in ("forward", "reverse", "random") if device == "emu" else (None,):
        launched.clear()
        with running_on(device, order) as backend, pytest.MonkeyPatch.context() as mp:
            mp.setattr(launch, "launch", recording)
            got = run(net, x, dy)
        assert launched.count("relu_forward") == relu_launches, backend.describe()
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=2e-5, atol=2e-5,
                                       err_msg=f"{name} on {backend.describe()}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("implicit", [False, True], ids=["im2col", "implicit"])
def test_fused_net_matches_the_unfused_cpu_net(device, implicit, tmp_path, monkeypatch):
    device_backend(device)
    if implicit:   # conv1 through the implicit-GEMM kernel's epilogue, else the column GEMM's
        monkeypatch.setattr(convolution, "_IMPLICIT_MIN_TILES", 0)
    net = make_net(net_text(), tmp_path)
    names = [(net.layer_names[i], net.layer_names[j]) for i, j in net.fused_relus]
    assert names == [("conv1", "relu1"), ("conv2", "relu2"), ("ip1", "relu3")]
    check_device_matches_cpu(net, device, (3, 4, 9, 8), relu_launches=0)


@pytest.mark.parametrize("device", DEVICES)
def test_a_run_that_stops_at_the_producer_sees_its_output_before_the_relu(device, tmp_path):
    device_backend(device)
    net = make_net(net_text(), tmp_path)
    x = RNG.normal(size=(3, 4, 9, 8)).astype(np.float32)
    want = np.array(net.forward(end="conv1", data=x)["conv1"])
    assert want.min() < 0
    with running_on(device):
        got = np.array(net.forward(end="conv1", data=x)["conv1"])
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
        # ... and a run from the ReLU on applies it (conv1 holds the unfused output now).
        got = np.array(net.forward(start="relu1", end="relu1")["conv1"])
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["leaky", "not in place", "read before", "3-D"])
def test_no_fusion_where_it_would_change_a_result(device, case, tmp_path):
    device_backend(device)
    shape = (3, 4, 9, 8)
    if case == "leaky":
        text = net_text(relu1_param="relu_param { negative_slope: 0.1 }")
    elif case == "not in place":
        text = net_text(relu1_top="relu1")
    elif case == "read before":
        # Another layer reads conv1 too: its first reader is the Split the net inserts.
        text = net_text(relu1_top="relu1", between='layer { name: "peek" type: "Power" '
                                                   'bottom: "conv1" top: "peek" }')
    else:   # 3-D convolutions (conv1 and conv2) run on the host: no fusion into them
        shape = (2, 4, 5, 4, 3)
        text = net_text(shape=shape, conv1="kernel_size: 2 pad: 1 group: 2")
    net = make_net(text, tmp_path)
    fused = [net.layer_names[i] for i, _ in net.fused_relus]
    assert fused == (["ip1"] if case == "3-D" else ["conv2", "ip1"])
    check_device_matches_cpu(net, device, shape, relu_launches=3 - len(fused))


def test_the_relu_must_be_the_first_reader_of_the_top():
    def layer(type_name, slope=0.0, has_gpu=True):
        return SimpleNamespace(type_name=type_name, slope=slope, has_gpu=has_gpu)
    layers = [layer("Input"), layer("Convolution"), layer("Power"), layer("ReLU"),
              layer("InnerProduct"), layer("ReLU")]
    bottoms = [[], ["x"], ["y"], ["y"], ["y"], ["z"]]
    tops = [["x"], ["y"], ["p"], ["y"], ["z"], ["z"]]
    # Power reads y between the convolution and its ReLU: not fused. ip -> ReLU is.
    assert fused_relus(layers, bottoms, tops) == [(4, 5)]
    layers[4] = layer("InnerProduct", has_gpu=False)
    assert fused_relus(layers, bottoms, tops) == []
