"""Snapshots: file names and formats, and resuming equals an uninterrupted run."""

import numpy as np
from google.protobuf import text_format

from confnet.proto import confnet_pb2 as pb
from confnet.proto.io import read_binary
from confnet.solver import get_solver

NET = """
name: "tinynet"
layer { name: "data" type: "Data" top: "data" top: "label"
        transform_param { scale: 0.00390625 mirror: true crop_size: 6 }
        data_param { source: "%s" batch_size: 8 } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "drop" type: "Dropout" bottom: "fc1" top: "fc1" dropout_param { dropout_ratio: 0.3 } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }
"""


def make_solver(db, prefix, max_iter=12, snapshot=0):
    text = (f'net_param {{ {NET % db} }} base_lr: 0.05 lr_policy: "step" gamma: 0.5 '
            f'stepsize: 4 momentum: 0.9 weight_decay: 0.001 max_iter: {max_iter} display: 1 '
            f'snapshot: {snapshot} snapshot_prefix: "{prefix}" random_seed: 7 '
            'snapshot_after_train: false')
    return get_solver(text_format.Parse(text, pb.SolverParameter()))


def losses_of(solver, iters):
    seen = []
    solver.on_iteration.append(lambda s, loss: seen.append(loss))
    solver.step(iters)
    return seen


def test_snapshot_files_and_resume_match_straight_run(tiny_lmdb, tmp_path):
    straight = make_solver(tiny_lmdb, str(tmp_path / "a" / "net"))
    expected = losses_of(straight, 12)

    first = make_solver(tiny_lmdb, str(tmp_path / "b" / "net"), snapshot=5)
    head = losses_of(first, 5)
    model = tmp_path / "b" / "net_iter_5.caffemodel"
    state_file = tmp_path / "b" / "net_iter_5.solverstate"
    assert model.exists() and state_file.exists()

    state = read_binary(str(state_file), pb.SolverState)
    assert state.iter == 5 and state.learned_net == str(model)
    assert len(state.history) == 4 and state.data_cursor[0].layer == "data"
    weights = read_binary(str(model), pb.NetParameter)
    fc1 = next(lp for lp in weights.layer if lp.name == "fc1")
    assert fc1.type == "InnerProduct" and list(fc1.blobs[0].shape.dim) == [10, 36]

    resumed = make_solver(tiny_lmdb, str(tmp_path / "b" / "net"))
    resumed.restore(str(state_file))
    tail = losses_of(resumed, 7)
    assert head + tail == expected
    for a, b in zip(straight.net.learnable_params, resumed.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)


def test_solve_writes_final_snapshot(tiny_lmdb, tmp_path):
    solver = make_solver(tiny_lmdb, str(tmp_path / "net"), max_iter=3)
    solver.param.snapshot_after_train = True
    solver.solve()
    assert (tmp_path / "net_iter_3.caffemodel").exists()
    assert (tmp_path / "net_iter_3.solverstate").exists()


def test_snapshot_diff_writes_gradients(tiny_lmdb, tmp_path):
    solver = make_solver(tiny_lmdb, str(tmp_path / "net"), max_iter=2)
    solver.param.snapshot_diff = True
    solver.step(2)
    solver.net.forward_backward()
    model, _ = solver.snapshot()
    fc2 = next(lp for lp in read_binary(model, pb.NetParameter).layer if lp.name == "fc2")
    diff = np.array(fc2.blobs[0].diff, np.float32).reshape(3, 10)
    np.testing.assert_array_equal(diff, solver.net.params["fc2"][0].diff)
    assert np.abs(diff).sum() > 0
