"""SIGKILL at any moment: training never leaves a snapshot that fails to load, and resuming from
the newest one ends exactly where an uninterrupted run ends; a killed conversion never leaves a
database that looks complete. Real confnet processes are killed at several moments."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from confnet.data.convert import read_labels
from confnet.data.lmdb_io import LMDBReader
from confnet.metrics import read_csv
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from confnet.solver import get_solver
from tests.test_signals import NET, alive, children

MAX_ITER = 40


def write_solver(folder, db):
    (folder / "net.prototxt").write_text(NET % db)
    path = folder / "solver.prototxt"
    path.write_text(f'net: "{folder}/net.prototxt" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" '
                    f'max_iter: {MAX_ITER} display: 1 snapshot: 1 random_seed: 5 '
                    f'snapshot_prefix: "{folder}/run"')
    return path


def confnet(*args):
    return subprocess.Popen([sys.executable, "-m", "confnet.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_after(process, ready, delay):
    """SIGKILL `process` `delay` seconds after `ready()` holds (or let it end first)."""
    deadline = time.monotonic() + 60
    while not ready() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(delay)
    process.kill()
    process.wait(timeout=30)


def iteration(path):
    return int(path.rsplit("_iter_", 1)[1].split(".")[0])


def check_snapshots(folder):
    """Every snapshot on disk loads; returns the newest solver state."""
    states = sorted(glob.glob(f"{folder}/run_iter_*.solverstate"), key=iteration)
    for path in glob.glob(f"{folder}/run_iter_*.caffemodel"):
        assert io.read_net(path, weights=True).layer, path
    for path in states:
        state = io.read_binary(path, pb.SolverState)
        assert state.iter == iteration(path) and os.path.exists(state.learned_net), path
    return states[-1] if states else None


def weights(path):
    return [io.blob_to_array(b) for layer in io.read_net(path, weights=True).layer
            for b in layer.blobs]


def test_killed_training_resumes_exactly(tmp_path, tiny_lmdb):
    solver_path = write_solver(tmp_path, tiny_lmdb)
    straight = tmp_path / "straight"
    straight.mkdir()
    reference = get_solver(str(write_solver(straight, tiny_lmdb)))
    reference.solve()
    newest = None
    for delay in (0.0, 0.003, 0.011, 0.023, 0.037):
        resume = ["--snapshot", newest] if newest else []
        start = iteration(newest) if newest else 0
        kill_after(confnet("train", "--solver", str(solver_path), *resume),
                   lambda start=start: check_count(tmp_path) > start + 1, delay)
        newest = check_snapshots(tmp_path) or newest
    finish = confnet("train", "--solver", str(solver_path), "--snapshot", newest)
    assert finish.wait(timeout=120) == 0
    logged = [int(row["iteration"]) for row in read_csv(f"{tmp_path}/run_log.csv")[1]
              if row["train_loss"]]
    assert logged == list(range(MAX_ITER + 1)), "the metrics log lost or repeated rows"
    for mine, theirs in zip(weights(f"{tmp_path}/run_iter_{MAX_ITER}.caffemodel"),
                            weights(f"{straight}/run_iter_{MAX_ITER}.caffemodel")):
        np.testing.assert_array_equal(mine, theirs)


def check_count(folder):
    states = glob.glob(f"{folder}/run_iter_*.solverstate")
    return max(map(iteration, states)) if states else 0


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads worker processes from /proc")
def test_killed_conversion_never_looks_complete(tmp_path):
    """Killed at several moments, convert-data leaves no database, or a whole one with its
    labels.txt; a rerun removes the dead run's partial database."""
    for label in ("cat", "dog"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(300):
            Image.new("L", (32, 32), i % 250).save(tmp_path / "src" / label / f"{i}.png")
    db = tmp_path / "out_lmdb"
    for delay in (0.0, 0.1, 0.3):
        process = confnet("convert-data", str(tmp_path / "src"), str(db), "--workers", "2")
        workers = []

        def started(process=process, workers=workers):
            workers[:] = children(process.pid)
            return bool(glob.glob(f"{db}.partial-*")) and bool(workers)
        kill_after(process, started, delay)
        for pid in workers:   # the kill leaves them orphaned; end them here (they are ours)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if db.exists():   # it finished before the kill: then it is whole
            break
    if not db.exists():
        assert glob.glob(f"{db}.partial-*"), "the killed conversion left no trace at all"
        assert confnet("convert-data", str(tmp_path / "src"), str(db)).wait(120) == 0
        assert not glob.glob(f"{db}.partial-*"), "a rerun removes the dead run's partial database"
    assert read_labels(db) == ["cat", "dog"]
    with LMDBReader(str(db)) as reader:
        assert len(reader) == 600
