"""Device vector math (confnet/gpu/blas.py over cuda/math.cu) against numpy.

Every test runs on the emulator in its three thread orders and, under the ``gpu`` marker, on GPU
0 (skipped without pycuda or a device). Sizes are odd and span several blocks (one case wraps
the reduction's grid-stride loop), so edge handling and the two-pass reduction are exercised.
"""

import numpy as np
import pytest

from confnet.gpu import blas
from tests.layers.harness import device_backend, running_on

# (device, emulator thread order): the emulator in each order, then a real GPU.
TARGETS = [pytest.param(("emu", order), id=f"emu-{order}")
           for order in ("forward", "reverse", "random")]
TARGETS.append(pytest.param((0, None), id="gpu0", marks=pytest.mark.gpu))

RNG = np.random.default_rng(7)


@pytest.fixture(params=TARGETS)
def dev(request):
    """A Device on the backend in use for the test (then back to the CPU)."""
    device, order = request.param
    device_backend(device)
    with running_on(device, order) as backend:
        device = Device(backend)
        yield device
        device.free()


class Device:
    """Host <-> device helpers for float32 arrays on one backend; frees what it allocated."""

    def __init__(self, backend):
        self.backend = backend
        self._allocated = []

    def put(self, array, offset=0):
        """A device copy of ``array`` (float32) starting ``offset`` floats into its allocation
        (offset 1: a pointer that is 4- but not 16-byte aligned)."""
        array = np.ascontiguousarray(array, np.float32)
        base = self.backend.alloc((array.size + offset) * 4)
        self._allocated.append(base)
        ptr = base + 4 * offset
        self.backend.htod(ptr, array)
        return ptr

    def free(self):
        for ptr in self._allocated:
            self.backend.free(ptr)
        self._allocated.clear()

    def empty(self, n, fill=np.nan):
        """A device array of n floats set to ``fill`` (NaN: a kernel that reads before writing
        shows it)."""
        return self.put(np.full(n, fill, np.float32))

    def get(self, ptr, shape):
        out = np.empty(shape, np.float32)
        self.backend.dtoh(out, ptr)
        return out


def vectors(n, count):
    return [RNG.normal(size=n).astype(np.float32) for _ in range(count)]


N = 1237   # 5 blocks of 256, the last one partial


def test_fill_scale_copy(dev):
    (x,) = vectors(N, 1)
    px, py = dev.put(x), dev.empty(N)
    blas.scale(N, -2.5, px)
    np.testing.assert_allclose(dev.get(px, N), x * np.float32(-2.5), rtol=1e-6)
    blas.copy(N, px, py)
    np.testing.assert_array_equal(dev.get(py, N), dev.get(px, N))
    blas.fill(N, 3.25, py)
    np.testing.assert_array_equal(dev.get(py, N), np.full(N, 3.25, np.float32))


def test_axpy_axpby_add_mul_add_sign(dev):
    x, y, z = vectors(N, 3)
    x[::7] = 0   # sign(0) = 0
    px, py = dev.put(x), dev.put(y)
    blas.axpy(N, 0.5, px, py)
    np.testing.assert_allclose(dev.get(py, N), y + np.float32(0.5) * x, rtol=1e-6, atol=1e-7)
    blas.axpby(N, 2.0, px, -1.0, py)
    want = 2 * x - (y + np.float32(0.5) * x)
    np.testing.assert_allclose(dev.get(py, N), want, rtol=1e-5, atol=1e-6)
    pnan = dev.empty(N)   # beta = 0 must not read y (NaN * 0 would be NaN)
    blas.axpby(N, 3.0, px, 0.0, pnan)
    np.testing.assert_allclose(dev.get(pnan, N), 3 * x, rtol=1e-6)
    pz, out = dev.put(z), dev.empty(N)
    blas.add(N, px, pz, out)
    np.testing.assert_allclose(dev.get(out, N), x + z, rtol=1e-6, atol=1e-7)
    blas.mul(N, px, pz, out)
    np.testing.assert_allclose(dev.get(out, N), x * z, rtol=1e-6, atol=1e-7)
    blas.add_sign(N, -0.25, px, pz)
    np.testing.assert_allclose(dev.get(pz, N), z - np.float32(0.25) * np.sign(x), rtol=1e-6)


@pytest.mark.parametrize("n", [0, 1, N, 70001])   # 70001 > 256 blocks x 256 threads
def test_reductions_match_float64(dev, n):
    x, y = vectors(n, 2)
    px, py, out = dev.put(x), dev.put(y), dev.empty(1)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for op, args, want in (("dot", (px, py), x64 @ y64), ("sumsq", (px,), x64 @ x64),
                           ("asum", (px,), np.abs(x64).sum())):
        getattr(blas, op)(n, *args, out)
        np.testing.assert_allclose(dev.get(out, 1)[0], want, rtol=2e-6, atol=1e-5, err_msg=op)


def test_reductions_are_bit_reproducible_across_thread_orders(dev):
    """Same bits on every run and, on the emulator, in every thread order: the partial sums and
    the reduction trees depend on the geometry only."""
    (x,) = vectors(16001, 1)
    px, out = dev.put(x), dev.empty(1)
    results = set()
    orders = ("forward", "reverse", "random") if hasattr(dev.backend, "order") else (None,)
    saved = getattr(dev.backend, "order", None)
    for order in orders:
        if order is not None:
            dev.backend.order = order
        for _ in range(2):
            blas.sumsq(x.size, px, out)
            results.add(dev.get(out, 1).tobytes())
    if saved is not None:
        dev.backend.order = saved
    assert len(results) == 1


@pytest.mark.parametrize("outer,channels,inner", [(3, 5, 7), (37, 11, 1), (1, 3, 300)])
def test_bias_forward_and_backward(dev, outer, channels, inner):
    y, dy = vectors(outer * channels * inner, 2)
    bias, db = vectors(channels, 2)
    py, pb = dev.put(y), dev.put(bias)
    blas.bias_forward(outer, channels, inner, pb, py)
    want = y.reshape(outer, channels, inner) + bias[:, None]
    np.testing.assert_allclose(dev.get(py, y.shape).reshape(want.shape), want, rtol=1e-6,
                               atol=1e-7)
    pdy, pdb = dev.put(dy), dev.put(db)
    blas.bias_backward(outer, channels, inner, pdy, pdb)   # adds to db
    want = db + dy.reshape(outer, channels, inner).astype(np.float64).sum(axis=(0, 2))
    np.testing.assert_allclose(dev.get(pdb, channels), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans", [False, True])
def test_gemv(dev, trans):
    m, n = 23, 41
    a = RNG.normal(size=(m, n)).astype(np.float32)
    x, y = vectors(m if trans else n, 1)[0], vectors(n if trans else m, 1)[0]
    pa, px, py = dev.put(a), dev.put(x), dev.put(y)
    blas.gemv(trans, m, n, 1.5, pa, px, -0.5, py)
    want = 1.5 * ((a.T if trans else a).astype(np.float64) @ x) - 0.5 * y
    np.testing.assert_allclose(dev.get(py, y.size), want, rtol=1e-5, atol=1e-5)


def test_gemm_choice_and_tf32_switch():
    assert not blas.tf32_enabled()   # exact float32 unless asked
    assert blas.choose_gemm(20, 25, 36864) == 1       # small output: many small tiles
    assert blas.choose_gemm(1, 500, 800) == 1          # a row: thin
    assert blas.choose_gemm(512, 512, 512) == 5        # 16 tiles of 128x128: too few
    assert blas.choose_gemm(4096, 4096, 4096) == 4     # 1024 tiles of 128x128
    assert blas.choose_gemm(32, 100 * 1024, 75) == 5   # CIFAR-10-quick conv1: 32 rows
    assert blas.choose_gemm(256, 4096, 9216) == 5      # CaffeNet fc6: 64 tiles of 128x128
    assert blas.choose_gemm(128, 256 * 729, 1200) == 4  # CaffeNet conv2, one group
    blas.set_tf32(True)
    try:
        assert blas.tf32_enabled()
        assert blas.choose_gemm(512, 512, 512) == 3
        assert blas.choose_gemm(8, 512, 512) == 1      # thinner than a WMMA fragment
        assert blas.choose_gemm(512, 512, 8) == 5      # too few flops for tensor cores
    finally:
        blas.set_tf32(False)


def test_bad_arguments_are_one_line_errors():
    from confnet.errors import ConfnetError
    with pytest.raises(ConfnetError, match="lda 3 is shorter than a row"):
        blas.gemm(False, False, 4, 4, 5, 1.0, 0, 0, 0.0, 0, lda=3)
    with pytest.raises(ConfnetError, match="gemm version 7"):
        blas.gemm(False, False, 4, 4, 5, 1.0, 0, 0, 0.0, 0, version=7)
    with pytest.raises(ConfnetError, match="bias_per 'channel'"):
        blas.gemm(False, False, 4, 4, 5, 1.0, 0, 0, 0.0, 0, bias=0, bias_per="channel")
    with pytest.raises(ConfnetError, match="outside"):
        blas.fill(-1, 0.0, 0)


SOLVER_NET = """layer { name: "data" type: "Input" top: "data" top: "label"
                input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
                inner_product_param { num_output: 2 } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }"""


@pytest.mark.parametrize("allow", [None, True, False])
def test_a_device_solver_switches_tf32_from_allow_tf32(allow, caplog):
    """allow_tf32 (default true) turns TF32 products on for a solver on a device, so large
    shapes pick the tensor-core version; false keeps float32; a CPU solver leaves the switch."""
    from google.protobuf import text_format

    from confnet.proto import confnet_pb2 as pb
    from confnet.solver import get_solver
    text = f'net_param {{ {SOLVER_NET} }} base_lr: 0.1 lr_policy: "fixed" max_iter: 1'
    if allow is not None:
        text += f" allow_tf32: {str(allow).lower()}"
    param = text_format.Parse(text, pb.SolverParameter())
    get_solver(param)
    assert not blas.tf32_enabled()   # on the CPU: untouched
    device_backend("emu")
    with running_on("emu"), caplog.at_level("INFO", logger="confnet"):
        get_solver(param)
        want = allow is not False
        assert blas.tf32_enabled() == want
        assert blas.choose_gemm(512, 512, 512) == (3 if want else 5)
    lines = [r.getMessage() for r in caplog.records if "TF32" in r.getMessage()]
    assert lines == [f"TF32 tensor-core products: {'on' if want else 'off'}"]


@pytest.mark.parametrize("flag", [[], ["--no-tf32"]])
def test_train_no_tf32_overrides_the_solver(flag, tmp_path, tiny_lmdb):
    """``confnet train --gpu emu`` uses TF32 products as allow_tf32 (default true) says;
    --no-tf32 turns them off, and the log says which, once."""
    device_backend("emu")
    from tests.test_cli import GOOD_NET, run, solver_for
    solver = solver_for(tmp_path, GOOD_NET % {"db": tiny_lmdb}, "snapshot_after_train: false")
    code, output = run(["train", "--solver", solver, "--gpu", "emu", *flag])
    assert code == 0, output
    state = "off" if flag else "on"
    assert output.count("TF32 tensor-core products:") == 1, output
    assert f"TF32 tensor-core products: {state}" in output
    assert blas.tf32_enabled() == (not flag)
