"""The SGD update on the device (cuda/optimizers.cu) against the solver's CPU update.

Two solvers of the same net start from the same weights, gradients and momentum history; both
run the solver's ``apply_update``, one on the CPU, the other on the device, where each parameter
takes the fused kernel (``update_param_gpu``: average, decay, momentum and ``w -= v`` in one
pass). Weights, diffs (the step) and history must agree. The weight blob has 333 elements: more
than one block.
"""

import numpy as np
import pytest
from google.protobuf import text_format

from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver
from tests.layers.harness import DEVICES, device_backend, running_on

NET = """
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 5 dim: 37 } shape { dim: 5 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "z"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0.5 }
        inner_product_param { num_output: 9 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss" }
"""


def make_solver(settings):
    """A solver whose parameters hold random diffs and momentum histories (seeded: two calls
    give two identical solvers)."""
    text = (f'net_param {{ {NET} }} base_lr: 0.05 lr_policy: "fixed" '
            f"max_iter: 10 display: 0 random_seed: 3 {settings}")
    solver = get_solver(text_format.Parse(text, pb.SolverParameter()))
    g = np.random.default_rng(1)
    for blob, history in zip(solver.net.learnable_params, solver.history):
        blob.diff[...] = g.normal(size=blob.shape)
        history.data[...] = g.normal(size=blob.shape) * 0.1
    solver.net.learnable_params[0].data.flat[:3] = 0   # sign(0) = 0 under L1
    return solver


def state(solver):
    return [np.array(a) for blob, h in zip(solver.net.learnable_params, solver.history)
            for a in (blob.cpu_data, blob.cpu_diff, h.cpu_data)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings", [
    "momentum: 0.9 weight_decay: 0.01",
    'momentum: 0.9 weight_decay: 0.01 regularization_type: "L1"',
    "momentum: 0.5 weight_decay: 0.01 iter_size: 3",
    "momentum: 0.9 weight_decay: 0.01 clip_gradients: 0.5",
    "momentum: 0",
])
def test_device_update_matches_cpu(device, settings):
    device_backend(device)
    cpu = make_solver(settings)
    cpu.apply_update()
    want = state(cpu)
    dev = make_solver(settings)
    with running_on(device) as backend:
        for blob, history in zip(dev.net.learnable_params, dev.history):
            blob.gpu_data, blob.gpu_diff, history.gpu_data   # noqa: B018 (upload before counting)
        backend.copies.reset()
        dev.apply_update()
        # The parameters' rates go up in one copy (kernels read them from device memory, so a
        # CUDA graph replays the current rate); clipping reads the global gradient norm back
        # (one float); nothing else moves.
        clipped = "clip_gradients" in settings
        assert backend.copies.htod == 1 and backend.copies.htod_bytes <= 4096, backend.copies
        assert backend.copies.dtoh == (1 if clipped else 0), backend.copies
        got = state(dev)
    names = [f"param {i} {part}" for i in range(2) for part in ("data", "diff", "history")]
    for name, g, w in zip(names, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=name)
