"""Blob memory shared by lifetime in TEST nets (confnet/memory_plan.py): the same outputs, bit
for bit, with fewer bytes, on the CPU and on the emulated device; what must keep its own storage
does; the solver's test nets, `confnet test` and `confnet time --phase TEST` plan, other nets
do not."""

import logging
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format

from confnet import gpu
from confnet.cli import main
from confnet.errors import ConfnetError
from confnet.layers import TEST, TRAIN
from confnet.net import Net
from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver

needs_gxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                               reason="the CUDA emulator needs g++")

FILL = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.2 }'

# Layer indices once the Splits are in: 0 in, 1 conv, 2 relu (in place), 3 pool, 4 flat (views
# pool's top), 5 fc, 6 h's Split, 7 tanh, 8 sig, 9 sum, 10 score, 11 score's Split, 12 prob,
# 13 loss.
NET = f"""name: "plan"
layer {{ name: "in" type: "Input" top: "x" top: "label"
        input_param {{ shape {{ dim: 3 dim: 2 dim: 7 dim: 5 }} shape {{ dim: 3 }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 {FILL} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "c" top: "c" }}
layer {{ name: "pool" type: "Pooling" bottom: "c" top: "p"
        pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "flat" type: "Flatten" bottom: "p" top: "f" }}
layer {{ name: "fc" type: "InnerProduct" bottom: "f" top: "h"
        inner_product_param {{ num_output: 5 {FILL} }} }}
layer {{ name: "tanh" type: "TanH" bottom: "h" top: "t" }}
layer {{ name: "sig" type: "Sigmoid" bottom: "h" top: "s" }}
layer {{ name: "sum" type: "Eltwise" bottom: "t" bottom: "s" top: "e" }}
layer {{ name: "score" type: "InnerProduct" bottom: "e" top: "score"
        inner_product_param {{ num_output: 4 {FILL} }} }}
layer {{ name: "prob" type: "Softmax" bottom: "score" top: "prob" }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }}
"""


def build(share, text=NET, phase=TEST):
    return Net(text_format.Parse(text, pb.NetParameter()), phase, share_blobs=share)


def inputs(seed=0, batch=3):
    g = np.random.default_rng(seed)
    return {"x": g.standard_normal((batch, 2, 7, 5)).astype(np.float32),
            "label": g.integers(0, 4, batch).astype(np.float32)}


def pair():
    """The net without and with sharing, with the same weights."""
    plain, shared = build(False), build(True)
    shared.copy_from(plain.to_proto())
    return plain, shared


def assert_same_outputs(plain, shared, **feed):
    want, got = plain.forward(**feed), shared.forward(**feed)
    assert list(want) == list(got) == ["prob", "loss"]
    for name in want:
        assert np.array_equal(want[name], got[name]), name
    assert np.array_equal(plain.blobs["label"].data, shared.blobs["label"].data)


def test_greedy_plan_of_a_net_with_splits_and_in_place_layers():
    net = build(True)
    plan = net.memory_plan
    groups = [[s.names for s in group] for group in plan.buffers]
    # c: [1, 3]; p = f: [3, 5]; h and its split tops: [5, 8]; t: [7, 9]; s: [8, 9]; e: [9, 10];
    # score and its split tops: [10, 13]. Each takes a free buffer, the smallest that fits.
    assert groups == [[["c"], ["h", "h_fc_0_split_0", "h_fc_0_split_1"], ["e"]],
                      [["p", "f"], ["t"]],
                      [["s"], ["score", "score_score_0_split_0", "score_score_0_split_1"]]]
    assert plan.sizes == [3 * 3 * 7 * 5, 3 * 3 * 4 * 3, 3 * 5]     # pooling rounds up: 4 x 3
    assert plan.planned_bytes == 4 * (315 + 108 + 15)
    assert plan.unplanned_bytes == 4 * (315 + 108 + 15 + 15 + 15 + 15 + 12)
    assert {s.names[0]: s.kept.split(" (")[0] for s in plan.kept} == {
        "x": "top of Input layer 'in'", "label": "top of Input layer 'in'",
        "prob": "a net output", "loss": "a loss"}
    # Sharing is real: one storage per buffer, the views of a storage keep viewing it.
    for size, group in zip(plan.sizes, plan.buffers):
        storages = {id(net.blobs[name].storage) for s in group for name in s.names}
        assert len(storages) == 1
        assert net.blobs[group[0].names[0]].storage.capacity == size


def test_same_outputs_on_the_cpu_with_fewer_bytes():
    plain, shared = pair()
    for seed in range(3):
        assert_same_outputs(plain, shared, **inputs(seed))
    assert plain.memory_plan is None
    storage = lambda net: sum({id(b.storage): b.storage.capacity * 4          # noqa: E731
                               for b in net.blobs.values()}.values())
    saved = shared.memory_plan.unplanned_bytes - shared.memory_plan.planned_bytes
    assert storage(shared) == storage(plain) - saved


def test_a_new_batch_size_plans_again():
    plain, shared = pair()
    assert_same_outputs(plain, shared, **inputs(0))
    assert_same_outputs(plain, shared, **inputs(1, batch=5))
    assert shared.memory_plan.sizes[0] == 5 * 3 * 7 * 5
    assert shared.blobs["c"].storage is shared.blobs["e"].storage
    assert_same_outputs(plain, shared, **inputs(2, batch=2))


KEPT_NET = """name: "kept"
layer { name: "d" type: "DummyData" top: "a"
        dummy_data_param { shape { dim: 2 dim: 3 } data_filler { type: "constant" value: 1 } } }
layer { name: "w" type: "Parameter" top: "w" parameter_param { shape { dim: 2 dim: 3 } } }
layer { name: "add" type: "Eltwise" bottom: "a" bottom: "w" top: "s" }
layer { name: "r" type: "ReLU" bottom: "s" top: "r" }
layer { name: "l2" type: "EuclideanLoss" bottom: "r" bottom: "a" top: "l2" }
layer { name: "twice" type: "Power" bottom: "l2" top: "twice" power_param { scale: 2 } }
layer { name: "neg" type: "Power" bottom: "r" top: "neg" power_param { scale: -1 } }
"""


def test_inputs_parameters_losses_and_outputs_keep_their_storage():
    net = build(True, KEPT_NET)
    kept = {s.names[0]: s.kept for s in net.memory_plan.kept}
    assert kept["a"] == "top of DummyData layer 'd' (an input)"
    assert kept["w"] == "top of Parameter layer 'w' (an input)"    # it views its parameter
    assert kept["l2"] == "a loss"                        # read by 'twice', still kept
    assert kept["twice"] == kept["neg"] == "a net output"
    shared = net.memory_plan.shared_names
    assert "s" in shared and not {"a", "w", "l2", "twice", "neg"} & set(shared)
    plain = build(False, KEPT_NET)
    plain.layer_dict["w"].blobs[0].set_data(np.arange(6).reshape(2, 3) - 2.5)
    net.layer_dict["w"].blobs[0].set_data(np.arange(6).reshape(2, 3) - 2.5)
    for _ in range(2):
        want, got = plain.forward(), net.forward()
        assert all(np.array_equal(want[k], got[k]) for k in want)
    assert net.blobs["w"].storage is net.layer_dict["w"].blobs[0].storage


def test_only_forward_from_the_start_and_only_in_test_nets():
    net = build(True)
    net.forward(**inputs())
    with pytest.raises(ConfnetError, match="forward only"):
        net.backward()
    with pytest.raises(ConfnetError, match="forward only"):
        net.forward_backward()
    with pytest.raises(ConfnetError, match="first layer only"):
        net.forward(start="fc")
    with pytest.raises(ConfnetError, match="c, t are overwritten"):
        net.forward(blobs=["c", "t", "x"])
    assert set(net.forward(blobs=["x"], end="fc")) == {"h", "x"}
    with pytest.raises(ConfnetError, match="only in TEST nets"):
        build(True, phase=TRAIN)


def test_the_plan_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="confnet"):
        build(True)
    line = next(r.getMessage() for r in caplog.records if "Memory plan" in r.getMessage())
    assert line.startswith("Memory plan: test net 'plan': 12 blobs (7 storages) in 3 shared "
                           "buffers, 1.7 KiB instead of 1.9 KiB; 4 storages kept apart")


# -- the emulated device -------------------------------------------------------------------------
@needs_gxx
def test_same_outputs_on_the_emulator_with_fewer_device_bytes():
    plain, shared = pair()          # built on the CPU: every device byte comes in forward
    gpu.use("emu")
    pool = gpu.current().pool
    used = []
    for net in (plain, shared):
        before = pool.in_use
        for seed in range(2):
            net.forward(**inputs(seed))
        used.append(pool.in_use - before)
    gpu.use(None)
    plan = shared.memory_plan
    rounded = [pool.round_size(4 * s.count) for group in plan.buffers for s in group]
    saved = sum(rounded) - sum(pool.round_size(4 * size) for size in plan.sizes)
    assert saved > 0 and used[0] - used[1] == saved
    # A net without backward never gives a planned blob's gradient device memory.
    assert all(shared.blobs[name]._diff._ptr is None for name in plan.shared_names)
    gpu.use("emu")
    for seed in range(2):
        assert_same_outputs(plain, shared, **inputs(seed))
    assert_same_outputs(plain, shared, **inputs(3, batch=4))
    # Back on the host, the shared storages' heads (on the device now) follow the writers.
    gpu.use(None)
    assert_same_outputs(plain, shared, **inputs(5, batch=4))


# -- who plans -----------------------------------------------------------------------------------
def solver_param(display=1):
    dummy = ('layer { name: "d" type: "DummyData" top: "x" top: "label" dummy_data_param { '
             'shape { dim: 4 dim: 2 dim: 5 dim: 3 } shape { dim: 4 } '
             'data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }\n')
    net = dummy + NET.split("\n", 3)[3]           # NET without its Input layer
    text = (f'net_param {{ name: "plan" {net} }} base_lr: 0.01 lr_policy: "fixed" max_iter: 2 '
            f'display: {display} test_iter: 1 test_interval: 2 random_seed: 1 '
            'snapshot_after_train: false')
    return text_format.Parse(text, pb.SolverParameter())


def test_the_solver_plans_its_test_nets_and_pycaffe_keeps_every_blob():
    from confnet import caffe
    solver = get_solver(solver_param())
    assert solver.net.memory_plan is None
    assert "c" in solver.test_nets[0].memory_plan.shared_names
    solver.solve()
    assert caffe.SGDSolver(solver_param()).test_nets[0].memory_plan is None


@needs_gxx
def test_the_training_log_shows_the_device_peak(caplog):
    gpu.use("emu")
    with caplog.at_level(logging.INFO, logger="confnet"):
        get_solver(solver_param(display=1)).solve()
    gpu.use(None)
    lines = [r.getMessage() for r in caplog.records if "Device memory:" in r.getMessage()]
    assert len(lines) == 3              # display at iterations 0 and 1, and at the end
    assert all(" peak, " in line and " held (" in line for line in lines)


def write_net(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    weights = tmp_path / "w.caffemodel"
    build(False).save(str(weights))
    return str(path), str(weights)


def test_confnet_time_phase_test_times_forward_with_shared_blobs(tmp_path):
    model, _ = write_net(tmp_path)
    result = CliRunner().invoke(main, ["time", "--model", model, "--iterations", "2",
                                       "--phase", "TEST"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line}
    assert rows["conv"][3] == "-"                                 # no backward column
    assert "Memory plan: test net 'plan'" in result.output
    assert "memory: 2.6 KB of blob data (shared by lifetime; 2.8 KB unshared)" in result.output
    assert "host peak: " in result.output and " resident (process maximum RSS)" in result.output
    result = CliRunner().invoke(main, ["time", "--model", model, "--iterations", "1"])
    assert result.exit_code == 0, result.output
    assert "Memory plan" not in result.output and "unshared" not in result.output


@needs_gxx
def test_confnet_time_on_the_emulator_shows_the_device_peak(tmp_path):
    model, _ = write_net(tmp_path)
    result = CliRunner().invoke(main, ["time", "--model", model, "--iterations", "1",
                                       "--phase", "TEST", "--gpu", "emu"])
    gpu.use(None)
    assert result.exit_code == 0, result.output
    assert "shared by lifetime" in result.output
    assert " peak, " in result.output.splitlines()[-1]


def test_confnet_test_shares_and_scores_as_before(tmp_path):
    model, weights = write_net(tmp_path)
    result = CliRunner().invoke(main, ["test", "--model", model, "--weights", weights,
                                       "--iterations", "2"])
    assert result.exit_code == 0, result.output
    assert "Memory plan: test net 'plan'" in result.output
    assert "loss = " in result.output
