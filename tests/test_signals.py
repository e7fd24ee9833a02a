"""SIGINT/SIGHUP during training (Caffe's --sigint_effect/--sighup_effect): stop after the
current iteration with a snapshot, snapshot and go on, ignore; a second SIGINT aborts at once."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from confnet.signals import handle_signals
from confnet.solver import get_solver

NET = """
layer { name: "d" type: "Data" top: "data" top: "label"
        data_param { source: "%s" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def solver_text(tmp_path, tiny_lmdb, max_iter):
    net = tmp_path / "net.prototxt"
    net.write_text(NET % tiny_lmdb)
    return (f'net: "{net}" base_lr: 0.01 lr_policy: "fixed" max_iter: {max_iter} display: 1 '
            f'snapshot_prefix: "{tmp_path}/run"')


def make_solver(tmp_path, tiny_lmdb, max_iter=100):
    return get_solver(io.parse_text(solver_text(tmp_path, tiny_lmdb, max_iter),
                                    pb.SolverParameter))


def send_at(solver, iteration, *signums):
    def callback(s, loss):
        if s.iter == iteration:
            for signum in signums:
                os.kill(os.getpid(), signum)
    solver.on_iteration.append(callback)


def snapshots(tmp_path):
    return sorted(p.name for p in tmp_path.glob("run_iter_*"))


def test_sigint_stops_after_the_iteration_with_a_snapshot(tmp_path, tiny_lmdb):
    solver = make_solver(tmp_path, tiny_lmdb)
    send_at(solver, 3, signal.SIGINT)
    with handle_signals(solver):
        solver.solve()
    assert solver.iter == 3
    assert snapshots(tmp_path) == ["run_iter_3.caffemodel", "run_iter_3.solverstate"]
    assert (tmp_path / "run_log.csv").read_text().splitlines()[-1].startswith("2,")


def test_sighup_snapshots_and_goes_on(tmp_path, tiny_lmdb):
    solver = make_solver(tmp_path, tiny_lmdb, max_iter=5)
    send_at(solver, 2, signal.SIGHUP)
    with handle_signals(solver):
        solver.solve()
    assert solver.iter == 5
    assert snapshots(tmp_path) == ["run_iter_2.caffemodel", "run_iter_2.solverstate",
                                   "run_iter_5.caffemodel", "run_iter_5.solverstate"]


def test_sigint_effects_snapshot_and_none(tmp_path, tiny_lmdb):
    solver = make_solver(tmp_path, tiny_lmdb, max_iter=4)
    send_at(solver, 1, signal.SIGINT)
    with handle_signals(solver, sigint="snapshot"):
        solver.solve()
    assert solver.iter == 4 and "run_iter_1.caffemodel" in snapshots(tmp_path)
    (tmp_path / "none").mkdir()
    solver = make_solver(tmp_path / "none", tiny_lmdb, max_iter=3)
    send_at(solver, 1, signal.SIGINT)
    with handle_signals(solver, sigint="none"):
        solver.solve()
    assert solver.iter == 3


def test_second_sigint_aborts_at_once(tmp_path, tiny_lmdb):
    solver = make_solver(tmp_path, tiny_lmdb)
    send_at(solver, 2, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), handle_signals(solver):
        solver.solve()
    assert snapshots(tmp_path) == []


def test_handlers_are_restored(tmp_path, tiny_lmdb):
    before = signal.getsignal(signal.SIGINT)
    with handle_signals(make_solver(tmp_path, tiny_lmdb)):
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_on_the_command_line(tmp_path, tiny_lmdb):
    """A real confnet process: Ctrl-C once stops it cleanly, with exit code 0 and a snapshot."""
    solver = tmp_path / "solver.prototxt"
    solver.write_text(solver_text(tmp_path, tiny_lmdb, 10 ** 6))
    process = subprocess.Popen([sys.executable, "-m", "confnet.cli", "train", "--solver",
                                str(solver)], stderr=subprocess.PIPE, text=True)
    csv = tmp_path / "run_log.csv"
    deadline = time.monotonic() + 60
    while not (csv.exists() and len(csv.read_text().splitlines()) > 2):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Optimization stopped early" in err and "Traceback" not in err
    assert any(name.endswith(".solverstate") for name in snapshots(tmp_path))


def test_sigterm_stops_training_with_a_snapshot(tmp_path, tiny_lmdb):
    """kill (SIGTERM) acts as Ctrl-C: stop after the iteration, with a snapshot, exit code 0."""
    solver = tmp_path / "solver.prototxt"
    solver.write_text(solver_text(tmp_path, tiny_lmdb, 10 ** 6))
    process = subprocess.Popen([sys.executable, "-m", "confnet.cli", "train", "--solver",
                                str(solver)], stderr=subprocess.PIPE, text=True)
    wait_for_rows(process, tmp_path / "run_log.csv", 3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "SIGTERM received" in err and "Optimization stopped early" in err
    assert any(name.endswith(".solverstate") for name in snapshots(tmp_path))


def test_sigterm_effect_none_is_ignored(tmp_path, tiny_lmdb):
    solver = make_solver(tmp_path, tiny_lmdb, max_iter=3)
    send_at(solver, 1, signal.SIGTERM)
    with handle_signals(solver, sigterm="none"):
        solver.solve()
    assert solver.iter == 3


def wait_for_rows(process, csv, rows):
    deadline = time.monotonic() + 60
    while not (csv.exists() and len(csv.read_text().splitlines()) >= rows):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)


def children(pid):
    """The ids of the processes whose parent is `pid` (from /proc)."""
    found = []
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            with open(status) as stream:
                fields = dict(line.split(":\t", 1) for line in stream if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(fields["Pid"]))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as stream:
            return "\tZ" not in stream.read()
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads worker processes from /proc")
def test_sigterm_during_convert_data_removes_the_partial_output(tmp_path):
    """A killed conversion removes its partial database and stops its decoding workers."""
    Image.new("L", (64, 64), 90).save(tmp_path / "a.png")
    (tmp_path / "list.txt").write_text("a.png 0\n" * 30000)
    db = tmp_path / "out_lmdb"
    process = subprocess.Popen([sys.executable, "-m", "confnet.cli", "convert-data",
                                str(tmp_path / "list.txt"), str(db), "--workers", "2"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (glob.glob(f"{db}.partial-*") and children(process.pid)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    workers = children(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("confnet: terminated (SIGTERM)"), err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "list.txt"]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a decoding worker outlived the conversion"
        time.sleep(0.05)
