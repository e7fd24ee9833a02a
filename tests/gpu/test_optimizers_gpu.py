"""Every optimizer's fused device update (cuda/optimizers.cu) against its CPU update, and
snapshots that cross between the device and the CPU.

- Each of the six optimizers trains a small net five iterations on the CPU and on the emulator
  from the same weights and batches (a Data layer reading a small LMDB): after every iteration
  the loss, the weights and the optimizer's history blobs agree within float32 tolerance. Two
  settings each: L2 decay with iter_size 2 and clip_gradients small enough to clip; L1 decay
  with iter_size 1 and no clipping. The biases have decay_mult 0 (the no-decay case) and
  lr_mult 2.
- A snapshot written on the emulator resumes on the CPU, and one written on the CPU resumes on
  the emulator: the resumed run continues the uninterrupted CPU run's loss sequence.

The adaptive optimizers take delta 1e-4: their step g / (sqrt(h) + delta) divides by the
gradient's own size, so with a tiny delta a gradient that is zero up to rounding on one side
and not on the other would give steps differing by lr, not by float32 rounding.
"""

import contextlib
import logging

import numpy as np
import pytest
from google.protobuf import text_format

from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver
from tests.layers.harness import DEVICES, device_backend, running_on

NET = """
name: "optimized"
layer { name: "data" type: "Data" top: "data" top: "label"
        transform_param { scale: 0.00390625 mirror: true crop_size: 7 }
        data_param { source: "%s" batch_size: 5 } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 11 weight_filler { type: "gaussian" std: 0.3 }
                              bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "drop" type: "Dropout" bottom: "fc1" top: "fc1" dropout_param { dropout_ratio: 0.3 } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 }
                              bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }
"""

OPTIMIZERS = {
    "SGD": "base_lr: 0.05 momentum: 0.9",
    "Nesterov": "base_lr: 0.05 momentum: 0.9",
    "AdaGrad": "base_lr: 0.05 delta: 1e-4",
    "RMSProp": "base_lr: 0.01 rms_decay: 0.9 delta: 1e-4",
    "AdaDelta": "base_lr: 1.0 momentum: 0.95 delta: 1e-6",
    "Adam": "base_lr: 0.01 momentum: 0.9 momentum2: 0.999 delta: 1e-4",
}
SETTINGS = {
    "L2-iter2-clip": "weight_decay: 0.01 iter_size: 2 clip_gradients: 0.05",
    "L1": 'weight_decay: 0.01 regularization_type: "L1"',
}
STEPS = 5


def make_solver(db, optimizer, settings="", prefix=None):
    text = (f'net_param {{ {NET % db} }} type: "{optimizer}" {OPTIMIZERS[optimizer]} '
            f'lr_policy: "step" gamma: 0.5 stepsize: 3 max_iter: 100 display: 0 '
            f'average_loss: 1 random_seed: 5 snapshot_after_train: false allow_tf32: false '
            f'{settings}')
    if prefix:
        text += f' snapshot_prefix: "{prefix}"'
    return get_solver(text_format.Parse(text, pb.SolverParameter()))


def state(solver):
    """Copies of every weight and history blob."""
    return [np.array(b.cpu_data) for b in solver.net.learnable_params + solver.history]


def trajectory(solver, steps):
    """[(loss, state)] after each of ``steps`` iterations."""
    return [(solver.step(1), state(solver)) for _ in range(steps)]


def assert_close(got, want, what):
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{what}, blob {k}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings", sorted(SETTINGS))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_device_update_follows_the_cpu(optimizer, settings, device, tiny_lmdb, caplog):
    device_backend(device)
    caplog.set_level(logging.INFO, logger="confnet")
    want = trajectory(make_solver(tiny_lmdb, optimizer, SETTINGS[settings]), STEPS)
    with running_on(device):
        solver = make_solver(tiny_lmdb, optimizer, SETTINGS[settings])
        got = trajectory(solver, STEPS)
    assert not any("no device update" in r.getMessage() for r in caplog.records)
    if "clip" in settings:   # the setting clips at all
        assert any("Gradient clipping" in r.getMessage() for r in caplog.records)
    for step, ((loss, blobs), (cpu_loss, cpu_blobs)) in enumerate(zip(got, want)):
        assert loss == pytest.approx(cpu_loss, rel=1e-5), f"loss of iteration {step}"
        assert_close(blobs, cpu_blobs, f"{optimizer} {settings}, after iteration {step}")
    assert not np.array_equal(want[0][1][0], want[-1][1][0])   # the weights moved


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("optimizer", ["Adam", "Nesterov"])
def test_snapshots_cross_between_device_and_cpu(optimizer, device, tiny_lmdb, tmp_path):
    """CPU -> device and device -> CPU: 3 iterations, snapshot, 3 more after restoring on the
    other side, against 6 uninterrupted CPU iterations (losses, weights and history)."""
    device_backend(device)
    settings = SETTINGS["L2-iter2-clip"]
    straight = make_solver(tiny_lmdb, optimizer, settings)
    expected = [straight.step(1) for _ in range(6)]
    for first, second in [(device, None), (None, device)]:
        prefix = str(tmp_path / f"from_{first}" / "net")
        with running_on(first) if first is not None else contextlib.nullcontext():
            head_solver = make_solver(tiny_lmdb, optimizer, settings, prefix)
            head = [head_solver.step(1) for _ in range(3)]
            _, state_file = head_solver.snapshot()
        with running_on(second) if second is not None else contextlib.nullcontext():
            resumed = make_solver(tiny_lmdb, optimizer, settings, prefix)
            resumed.restore(state_file)
            assert resumed.iter == 3
            tail = [resumed.step(1) for _ in range(3)]
            final = state(resumed)
        np.testing.assert_allclose(head + tail, expected, rtol=1e-5,
                                   err_msg=f"{first} -> {second}")
        assert_close(final, state(straight), f"{first} -> {second}")
