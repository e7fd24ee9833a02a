"""The README's pycaffe example (models/lenet/pycaffe_lenet.py): NetSpec writes LeNet,
SGDSolver.step trains it on rendered digits, Classifier reads PNG files back."""

import importlib.util
import os

from confnet.proto import confnet_pb2 as pb
from confnet.proto import io

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "models", "lenet",
                      "pycaffe_lenet.py")


def test_pycaffe_lenet_example_learns(tmp_path):
    spec = importlib.util.spec_from_file_location("pycaffe_lenet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    accuracy, classified = module.main(["--out", str(tmp_path), "--iters", "150"])
    assert accuracy >= 0.85 and classified >= 0.8          # chance is 0.1
    train = io.read_net(str(tmp_path / "lenet_auto_train.prototxt"))
    assert [lp.name for lp in train.layer] == ["data", "conv1", "pool1", "conv2", "pool2",
                                               "fc1", "relu1", "score", "loss", "accuracy"]
    assert train.layer[0].data_param.backend == pb.DataParameter.LMDB
    assert (tmp_path / "lenet_auto.caffemodel").exists()
