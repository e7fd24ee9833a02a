"""confnet.caffe's top level: loading only on import, pycaffe's names, the schema under
caffe_pb2, modes, seeding and the layer type list."""

import subprocess
import sys
import types

import numpy as np
import pytest

import confnet
from confnet import caffe
from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2


def test_import_confnet_does_not_load_confnet_caffe():
    code = ("import sys, confnet; net = confnet.Net; "
            "print(sorted(m for m in sys.modules if m.startswith('confnet.caffe')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_pycaffe_names_are_there():
    for name in ("Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
                 "AdaDeltaSolver", "AdamSolver", "get_solver", "Layer", "Blob", "TRAIN",
                 "TEST", "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed",
                 "layer_type_list", "Classifier", "Detector", "NetSpec", "layers", "params",
                 "to_proto", "io"):
        assert hasattr(caffe, name), name
    assert (caffe.TRAIN, caffe.TEST) == (confnet.TRAIN, confnet.TEST) == (0, 1)
    assert caffe.Blob is confnet.blob.Blob and issubclass(caffe.Net, confnet.Net)


def test_caffe_pb2_is_the_schema_module():
    from confnet.caffe.proto import caffe_pb2
    assert caffe_pb2 is confnet_pb2 and caffe.proto.caffe_pb2 is confnet_pb2
    layer = caffe_pb2.LayerParameter(name="x", type="ReLU")
    assert isinstance(layer, confnet_pb2.LayerParameter)
    assert caffe_pb2.TRAIN == 0 and caffe_pb2.PoolingParameter.MAX == 0


def test_gpu_mode_without_a_backend_names_the_cpu(monkeypatch):
    monkeypatch.setattr(caffe, "_gpu_backend", lambda: None)
    caffe.set_mode_cpu()                                   # always fine
    with pytest.raises(ConfnetError, match=r"no GPU backend; .*caffe.set_mode_cpu\(\)"):
        caffe.set_mode_gpu()
    with pytest.raises(ConfnetError, match=r"set_device\(0\).*set_mode_cpu"):
        caffe.set_device(0)


def test_gpu_mode_hands_the_device_to_the_backend(monkeypatch):
    """Through a stand-in for confnet.gpu: only the calls made to it are checked here."""
    calls = []
    monkeypatch.setattr(caffe, "_gpu_backend", lambda: types.SimpleNamespace(use=calls.append))
    monkeypatch.setattr(caffe, "_mode", {"gpu": False, "device": 0})
    caffe.set_device(1)                  # as in Caffe: choosing a device stays in CPU mode
    assert calls == []
    caffe.set_mode_gpu()
    caffe.set_device("emu")
    caffe.set_mode_cpu()
    assert calls == [1, "emu", None]


def test_set_random_seed_repeats_fillers():
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }'
            ' layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param'
            ' { num_output: 4 weight_filler { type: "gaussian" std: 1 } } }')
    param = confnet.proto.io.parse_text(text, confnet_pb2.NetParameter)
    weights = []
    for _ in range(2):
        caffe.set_random_seed(7)
        weights.append(caffe.Net(param, caffe.TEST).params["fc"][0].data.copy())
    np.testing.assert_array_equal(*weights)
    assert weights[0].std() > 0.1


def test_layer_type_list():
    types_ = caffe.layer_type_list()
    assert {"Convolution", "InnerProduct", "Python", "SoftmaxWithLoss"} <= set(types_)
