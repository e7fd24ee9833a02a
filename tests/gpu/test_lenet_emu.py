"""End to end on the emulated GPU: the repository's LeNet (models/lenet) trains through the
hand-written kernels and follows the CPU run's losses, and an iteration copies nothing between
host and device but the input batch and the loss the user asked to see."""

import os
import shutil

import numpy as np
import pytest

from confnet import gpu
from confnet.proto import io
from confnet.solver import get_solver
from tests.conftest import write_digit_like_lmdb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="the CUDA emulator needs g++")
BATCH, ITERS = 4, 20


@pytest.fixture
def lenet_dir(tmp_path, monkeypatch):
    """A folder holding data/mnist_train_lmdb (28x28 digit-like images), made the current one:
    the net's sources are relative paths, as in the demo."""
    write_digit_like_lmdb(tmp_path / "data" / "mnist_train_lmdb", n=40, classes=10, size=28)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    gpu.use(None)


def lenet_solver(device, display=1):
    """The demo's LeNet solver and net, batch BATCH, no test net and no snapshots, on device."""
    gpu.use(device)
    param = io.read_solver(os.path.join(ROOT, "models", "lenet", "solver.prototxt"))
    net = io.read_net(os.path.join(ROOT, "models", "lenet", "train_val.prototxt"))
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.batch_size = BATCH
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    param.ClearField("test_iter")
    param.test_interval = 0
    param.display = display
    param.snapshot = 0
    param.ClearField("snapshot_prefix")
    param.allow_tf32 = False   # float32 products: the device run is compared to the CPU's
    return get_solver(param)


def losses_of(solver, iterations):
    out = []
    for _ in range(iterations):
        solver.step(1)
        out.append(solver.losses[-1])
    return np.array(out)


def test_lenet_on_the_emulator_follows_the_cpu(lenet_dir):
    cpu_solver = lenet_solver(None)
    cpu = losses_of(cpu_solver, ITERS)
    emu_solver = lenet_solver("emu")
    emu = losses_of(emu_solver, ITERS)
    assert cpu[-1] < cpu[0]   # it learns at all
    np.testing.assert_allclose(emu, cpu, rtol=1e-4, atol=1e-5)
    for a, b in zip(emu_solver.net.learnable_params, cpu_solver.net.learnable_params):
        np.testing.assert_allclose(a.cpu_data, b.cpu_data, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("graph, uploads", [(True, 1), (False, 2)])
def test_an_iteration_copies_only_the_batch_and_the_displayed_loss(lenet_dir, graph, uploads):
    solver = lenet_solver("emu", display=4)
    solver.param.cuda_graph = graph
    copies = gpu.current().copies
    solver.step(1)            # iteration 0 uploads the weights, and displays
    copies.reset()
    solver.step(4)            # iterations 1-3 are not displayed, iteration 4 is
    # Each iteration: the data and label batches, and the per-iteration values (the inv policy's
    # rates, the dropout seed): one upload of the scalar table when the iteration is replayed
    # from a graph (iterations 2-4), two eagerly (the seed at the dropout's forward, the rates
    # at the update). Iteration 4: the four logged losses in one copy, and the net's loss output
    # for the display line; nothing else comes back.
    assert (copies.htod, copies.dtoh) == (4 * (2 + uploads), 2), copies
    assert copies.dtoh_bytes == 4 * 4 + 4, copies
    if graph:
        assert solver._graphs.replays == 3 and solver._graphs.captures == 1
