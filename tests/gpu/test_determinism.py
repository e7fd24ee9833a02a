"""Determinism on the device: the same training steps give the same bits on every run.

A small convolutional net with pooling and dropout trains a few iterations on the emulator
twice, each time with the threads of every block run in a different random order (different
seeds), and once in forward order. Reductions (softmax, the loss, bias and weight gradients,
the gradient norm of clip_gradients) and the dropout mask must not depend on the order threads
run in: the weights and the optimizer history must be bit-identical across the runs.
"""

import numpy as np
import pytest
from google.protobuf import text_format

from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver
from tests.layers.harness import DEVICES, device_backend, running_on

NET = """
name: "deterministic"
layer { name: "data" type: "Data" top: "data" top: "label"
        transform_param { scale: 0.00390625 mirror: true }
        data_param { source: "%s" batch_size: 3 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1
                            weight_filler { type: "xavier" } bias_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "drop" type: "Dropout" bottom: "pool" top: "pool" dropout_param { dropout_ratio: 0.4 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""
ITERS = 4


def train(db, device, order, seed):
    """The weights and history after ITERS iterations on ``device`` with emulator thread
    ``order`` and ``seed`` (a GPU has no say in the order: both are ignored there)."""
    text = (f'net_param {{ {NET % db} }} type: "Adam" base_lr: 0.01 momentum: 0.9 '
            'momentum2: 0.999 lr_policy: "fixed" weight_decay: 0.001 iter_size: 2 '
            'clip_gradients: 0.5 max_iter: 100 display: 0 random_seed: 11')
    backend = device_backend(device)
    emulated = backend.name == "emu"
    saved = backend.seed if emulated else None
    if emulated:
        backend.seed = seed
    try:
        with running_on(device, order if emulated else None):
            solver = get_solver(text_format.Parse(text, pb.SolverParameter()))
            solver.step(ITERS)
            return [np.array(b.cpu_data) for b in solver.net.learnable_params + solver.history]
    finally:
        if emulated:
            backend.seed = saved


@pytest.mark.parametrize("device", DEVICES)
def test_training_steps_give_the_same_bits_in_any_thread_order(device, tiny_lmdb):
    first = train(tiny_lmdb, device, "random", 1)
    runs = {"random order, seed 2": train(tiny_lmdb, device, "random", 2),
            "forward order": train(tiny_lmdb, device, "forward", 0)}
    for what, blobs in runs.items():
        for k, (a, b) in enumerate(zip(first, blobs)):
            assert a.tobytes() == b.tobytes(), f"blob {k} differs between runs ({what})"
    assert all(np.isfinite(b).all() for b in first)
