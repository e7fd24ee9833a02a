"""CUDA graphs (confnet/gpu/graph.py): capture and replay on the emulator, the driver's
stream-capture call sequence on a fake driver library, and the solver's replayed iterations,
which must give the bits of eager ones (--no-graph)."""

import logging
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from google.protobuf import text_format

from confnet import gpu
from confnet.errors import ConfnetError
from confnet.gpu.backend import Backend, CaptureBroken
from confnet.gpu.graph import CAPTURE_MODE_THREAD_LOCAL, DriverGraphs
from confnet.layers import Layer, register_layer
from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver
from tests.conftest import write_digit_like_lmdb
from tests.layers.harness import device_backend

needs_gxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                               reason="the CUDA emulator needs g++")


@pytest.fixture
def emu():
    backend = gpu.use("emu")
    yield backend
    gpu.use(None)


# -- the backend interface on the emulator ------------------------------------------------------

def _fill(backend, ptr, n, value):
    """scale_forward-free device work: a memset of n floats."""
    backend.memset_d32(ptr, int(np.array(value, np.float32).view(np.uint32)), n)


def _read(backend, ptr, n):
    out = np.zeros(n, np.float32)
    backend.dtoh(out, ptr)
    return out


@needs_gxx
def test_emulator_records_while_capturing_and_replays_in_order(emu):
    from confnet.gpu import blas
    n = 37
    x, y = emu.alloc(4 * n), emu.alloc(4 * n)
    _fill(emu, y, n, 0.0)
    emu.begin_capture()
    assert emu.capturing
    _fill(emu, x, n, 2.0)
    blas.axpy(n, np.float32(1.5), x, y)           # y += 1.5 x: a kernel
    emu.dtod(x, y, 4 * n)                          # x = y
    graph = emu.end_capture()
    assert not emu.capturing
    np.testing.assert_array_equal(_read(emu, y, n), 0.0)   # recorded, not run
    emu.replay(graph)
    np.testing.assert_array_equal(_read(emu, y, n), 3.0)
    np.testing.assert_array_equal(_read(emu, x, n), 3.0)
    emu.replay(graph)                              # the memset resets x before each axpy
    np.testing.assert_array_equal(_read(emu, y, n), 6.0)
    graph.release()
    with pytest.raises(ConfnetError, match="released"):
        emu.replay(graph)


@needs_gxx
@pytest.mark.parametrize("what, match", [
    (lambda be, p: be.dtoh(np.zeros(3, np.float32), p), "device->host"),
    (lambda be, p: be.htod(p, np.zeros(3, np.float32)), "host->device"),
    (lambda be, p: be.synchronize(), "synchronize"),
    (lambda be, p: be.record_event(), "event"),
    (lambda be, p: be.alloc(12345678), "allocation of 12345678 bytes"),
])
def test_what_cannot_be_captured_breaks_the_capture_cleanly(emu, what, match):
    ptr = emu.alloc(64)
    emu.begin_capture()
    _fill(emu, ptr, 3, 1.0)
    with pytest.raises(CaptureBroken, match=match):
        what(emu, ptr)
    assert not emu.capturing
    _fill(emu, ptr, 3, 4.0)                        # the stream runs work again at once
    np.testing.assert_array_equal(_read(emu, ptr, 3), 4.0)


@needs_gxx
def test_blocks_freed_during_a_capture_stay_with_the_graph(emu):
    size = 4 * 1000
    emu.pool.release_cached()                      # earlier tests may have left blocks cached
    emu.free(emu.alloc(size))                      # one cached block of that size
    emu.begin_capture()
    scratch = emu.alloc(size)                      # from the cache: no driver call
    emu.free(scratch)
    assert emu.alloc(size) == scratch              # reused within the capture, as eagerly
    emu.free(scratch)
    graph = emu.end_capture()
    assert graph.held == [scratch]
    assert not emu.pool.has_cached(size)           # nobody else gets it while the graph lives
    graph.release()
    assert emu.pool.has_cached(size)


# -- the driver API on a fake libcuda -----------------------------------------------------------

class FakeDriver:
    """A test double of libcuda's graph entry points: logs each call, hands out handles, and
    fails the call named in ``fail`` with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901)."""

    def __init__(self, fail=None):
        self.calls, self.fail, self.capturing, self._next = [], fail, False, 0x100

    def _handle(self):
        self._next += 1
        return self._next

    def _log(self, name, *args):
        self.calls.append((name,) + args)
        return 901 if name == self.fail else 0

    def cuStreamBeginCapture_v2(self, stream, mode):
        self.capturing = True
        return self._log("begin", stream.value, mode.value)

    def cuStreamEndCapture(self, stream, graph):
        self.capturing = False
        graph.contents.value = self._handle()
        return self._log("end", stream.value)

    def cuGraphInstantiateWithFlags(self, executable, graph, flags):
        executable.contents.value = self._handle()
        return self._log("instantiate", graph.value, flags.value)

    def cuGraphLaunch(self, executable, stream):
        return self._log("launch", executable.value, stream.value)

    def cuGraphExecDestroy(self, executable):
        return self._log("exec_destroy", executable.value)

    def cuGraphDestroy(self, graph):
        return self._log("destroy", graph.value)

    def cuStreamIsCapturing(self, stream, status):
        status.contents.value = int(self.capturing)
        return self._log("is_capturing", stream.value)

    def cuGetErrorName(self, result, name):
        known = result.value == 901
        name.contents.value = b"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED" if known else None
        return 0 if known else 500


def fake_cuda_backend(driver):
    """A PyCudaBackend without pycuda: the base state, a stream handle and the fake driver."""
    from confnet.gpu.pycuda_backend import PyCudaBackend
    backend = PyCudaBackend.__new__(PyCudaBackend)
    Backend.__init__(backend)
    backend.stream = SimpleNamespace(handle=0xABC, synchronize=lambda: None)
    backend._graph_api = DriverGraphs(driver)
    return backend


def test_pycuda_backend_drives_the_capture_api_in_order():
    driver = FakeDriver()
    backend = fake_cuda_backend(driver)
    backend.begin_capture()
    graph = backend.end_capture()
    executable, handle = graph.handle
    for _ in range(3):
        backend.replay(graph)
    graph.release()
    graph.release()                                # destroys once
    assert [c for c in driver.calls if c[0] != "is_capturing"] == [
        ("begin", 0xABC, CAPTURE_MODE_THREAD_LOCAL),
        ("end", 0xABC),
        ("instantiate", handle, 0),
        ("launch", executable, 0xABC), ("launch", executable, 0xABC),
        ("launch", executable, 0xABC),
        ("exec_destroy", executable),
        ("destroy", handle),
    ]


def test_a_refused_call_abandons_the_driver_capture():
    driver = FakeDriver(fail="end")                # the driver invalidated the capture
    backend = fake_cuda_backend(driver)
    backend.begin_capture()
    with pytest.raises(CaptureBroken, match="synchronize"):
        backend.synchronize()
    assert not backend.capturing and not driver.capturing
    assert ("end", 0xABC) in driver.calls


def test_driver_errors_carry_the_driver_s_name():
    api = DriverGraphs(FakeDriver(fail="launch"))
    with pytest.raises(ConfnetError, match=r"cuGraphLaunch failed with "
                                           r"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED \(901\)"):
        api.launch(1, 2)
    assert isinstance(api.is_capturing(0xABC), bool)


@pytest.mark.gpu
def test_capture_and_replay_on_a_gpu():
    from confnet.gpu import blas
    backend = gpu.use(device_backend(0) and 0)
    try:
        n = 1001
        x = backend.alloc(4 * n)
        _fill(backend, x, n, 1.0)
        backend.begin_capture()
        blas.scale(n, np.float32(2), x)
        graph = backend.end_capture()
        np.testing.assert_array_equal(_read(backend, x, n), 1.0)
        for _ in range(3):
            backend.replay(graph)
        np.testing.assert_array_equal(_read(backend, x, n), 8.0)
        graph.release()
        backend.begin_capture()
        with pytest.raises(CaptureBroken):
            _read(backend, x, n)
        assert not backend.capturing
        assert not backend._graphs().is_capturing(backend.stream.handle)
    finally:
        gpu.use(None)


# -- the solver: replayed iterations give the bits of eager ones --------------------------------

NET = """
layer { name: "data" type: "Data" top: "x" top: "y"
        data_param { source: "%s" batch_size: 5 backend: LMDB } transform_param { scale: 0.01 } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }
layer { name: "ip1" type: "InnerProduct" bottom: "c" top: "h"
        inner_product_param { num_output: 9 weight_filler { type: "xavier" } } }
%s
layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "z"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss" }
"""
DROPOUT = 'layer { name: "drop" type: "Dropout" bottom: "h" top: "h" dropout_param { dropout_ratio: 0.3 } }'
BREAKER = 'layer { name: "peek" type: "HostPeek" bottom: "h" top: "h2" }'
SGD = 'type: "SGD" momentum: 0.9 weight_decay: 0.01 lr_policy: "inv" gamma: 0.1 power: 0.75'
ADAM = 'type: "Adam" momentum: 0.9 momentum2: 0.99 lr_policy: "poly" power: 1.5'


@register_layer("HostPeek")
class HostPeek(Layer):
    """y = x, and forward reads x on the host (a host sync a graph cannot hold)."""

    num_bottom = num_top = 1
    has_gpu = True

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])

    def forward_gpu(self, bottom, top):
        self.peeked = float(bottom[0].cpu_data.sum())
        top[0].copy_from(bottom[0])

    def backward_gpu(self, top, propagate_down, bottom):
        bottom[0].copy_from(top[0], diff=True)


@pytest.fixture
def digits(tmp_path):
    path = tmp_path / "digits"
    write_digit_like_lmdb(path, n=23, classes=3, size=7)
    yield str(path)
    gpu.use(None)


def make_solver(db, solver, extra_layer="", graph=True, settings=""):
    net = NET % (db, extra_layer)
    if extra_layer == BREAKER:
        net = net.replace('bottom: "h" top: "z"', 'bottom: "h2" top: "z"')
    text = (f"net_param {{ {net} }} base_lr: 0.05 max_iter: 12 display: 3 random_seed: 5 "
            f"cuda_graph: {str(graph).lower()} {solver} {settings}")
    gpu.use("emu")
    return get_solver(text_format.Parse(text, pb.SolverParameter()))


def train(solver, iterations):
    """Losses of each iteration, and every iteration's weights and optimizer history (read
    between iterations, as a snapshot does: the host reads must see what replays wrote)."""
    losses, states = [], []
    for _ in range(iterations):
        solver.step(1)
        losses.append(solver.losses[-1])
        states += [np.array(b.cpu_data) for b in solver.net.learnable_params + solver.history]
    return np.array(losses), states


def assert_same_bits(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    assert all(np.array_equal(g, w) for g, w in zip(got[1], want[1]))


@needs_gxx
@pytest.mark.parametrize("solver, extra, settings", [
    (SGD, DROPOUT, ""),
    (ADAM, "", ""),
    (SGD, DROPOUT, "iter_size: 3"),
])
def test_replayed_training_is_bit_identical_to_eager(digits, solver, extra, settings):
    eager = train(make_solver(digits, solver, extra, graph=False, settings=settings), 7)
    replaying = make_solver(digits, solver, extra, settings=settings)
    graphed = train(replaying, 7)
    runner = replaying._graphs
    assert runner.enabled, runner.off_reason
    passes = 3 if "iter_size" in settings else 1
    # iterations 0 and 1 warm up, 2 captures (and replays its new graphs), 3-6 replay
    assert runner.captures == min(passes, 3) and runner.replays == 5 * passes
    assert_same_bits(graphed, eager)


@needs_gxx
def test_a_layer_that_breaks_capture_falls_back_to_eager_with_one_line(digits, caplog):
    eager = train(make_solver(digits, SGD, BREAKER, graph=False), 5)
    with caplog.at_level(logging.INFO, logger="confnet"):
        solver = make_solver(digits, SGD, BREAKER)
        graphed = train(solver, 5)
    lines = [r.getMessage() for r in caplog.records if "CUDA graphs off" in r.getMessage()]
    assert len(lines) == 1 and "device->host copy" in lines[0], lines
    assert not solver._graphs.enabled and solver._graphs.replays == 0
    assert_same_bits(graphed, eager)


@needs_gxx
def test_solver_callbacks_keep_the_iterations_eager(digits, caplog):
    class Callback:
        def on_start(self):
            pass

        def on_gradients_ready(self):
            pass
    solver = make_solver(digits, SGD)
    solver.callbacks.append(Callback())
    with caplog.at_level(logging.INFO, logger="confnet"):
        solver.step(3)
    assert not solver._graphs.enabled and solver._graphs.captures == 0
    assert any("CUDA graphs off: solver callbacks" in r.getMessage() for r in caplog.records)


INPUT_NET = """
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss" }
"""


def feed_batches(solver, iteration):
    """Batches of 4, then 7 (iterations 4-5), then 4 again, written into the Input tops."""
    batch = 7 if iteration in (4, 5) else 4
    g = np.random.default_rng(iteration)
    x, y = solver.net.blobs["x"], solver.net.blobs["y"]
    x.reshape((batch, 6))
    y.reshape((batch,))
    x.set_data(g.normal(size=(batch, 6)))
    y.set_data(np.arange(batch) % 3)


@needs_gxx
def test_a_shape_change_recaptures(emu):
    def run(graph):
        text = (f"net_param {{ {INPUT_NET} }} base_lr: 0.1 lr_policy: \"fixed\" max_iter: 20 "
                f"display: 0 random_seed: 2 type: \"SGD\" momentum: 0.5 "
                f"cuda_graph: {str(graph).lower()}")
        solver = get_solver(text_format.Parse(text, pb.SolverParameter()))
        feed_batches(solver, 0)
        solver.on_iteration.append(lambda s, _loss: feed_batches(s, s.iter))
        out = train(solver, 12)
        return solver, out
    _, eager = run(False)
    solver, graphed = run(True)
    runner = solver._graphs
    assert runner.enabled
    # captured at 2 (batch 4), dropped at 4 (batch 7): 4-5 eager; 6 (batch 4 again) eager,
    # 7 eager, 8 captures again, 9-11 replay
    assert runner.captures == 2 and runner.replays == 2 + 4
    assert_same_bits(graphed, eager)


@needs_gxx
def test_snapshots_resume_and_tests_between_replays(digits, tmp_path):
    """A replaying run that tests every 2 iterations and snapshots at 4, resumed from that
    snapshot, ends with the weights of a straight eager run."""
    settings = (f'snapshot: 4 snapshot_prefix: "{tmp_path}/run" test_iter: 2 test_interval: 2 '
                "test_initialization: false")
    eager = make_solver(digits, SGD, DROPOUT, graph=False, settings=settings)
    eager.step(7)
    straight = [np.array(b.cpu_data) for b in eager.net.learnable_params]
    first = make_solver(digits, SGD, DROPOUT, settings=settings)
    first.step(5)
    assert first._graphs.replays > 0
    resumed = make_solver(digits, SGD, DROPOUT, settings=settings)
    resumed.restore(f"{tmp_path}/run_iter_4.solverstate")
    resumed.step(3)
    assert resumed._graphs.replays > 0
    for got, want in zip(resumed.net.learnable_params, straight):
        np.testing.assert_array_equal(got.cpu_data, want)
