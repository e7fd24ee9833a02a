"""TensorBoard scalars: written while training (train --tensorboard) or from a metrics CSV or a
training log afterwards (confnet tensorboard), and read back with TensorBoard's own event reader
(the code behind ``tensorboard --logdir``)."""

import os

import pytest

from confnet.metrics import TensorBoardWriter, csv_to_tensorboard
from tests.test_cli import GOOD_NET, one_error_line, run, write

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def scalars(logdir):
    """{tag: [(step, value)]} of the event files in ``logdir``."""
    reader = event_accumulator.EventAccumulator(str(logdir))
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
            for tag in reader.Tags()["scalars"]}


def test_writer_rows_read_back(tmp_path):
    writer = TensorBoardWriter(tmp_path, start=1000.0)
    writer.write(0, 0.5, **{"test0/accuracy": 0.25})
    writer.write(10, 1.5, lr=0.01, train_loss=2.5, images_per_second=None)
    writer.write(20, 2.5, lr=0.005, train_loss=1.5, images_per_second=640.0)
    writer.close()
    got = scalars(tmp_path)
    assert got["train/loss"] == [(10, 2.5), (20, 1.5)]
    assert got["train/lr"] == [(10, pytest.approx(0.01)), (20, pytest.approx(0.005))]
    assert got["train/images_per_second"] == [(20, 640.0)]
    assert got["test0/accuracy"] == [(0, 0.25)]
    reader = event_accumulator.EventAccumulator(str(tmp_path))
    reader.Reload()
    assert reader.Scalars("train/loss")[1].wall_time == pytest.approx(1002.5)


def test_train_writes_tensorboard(tmp_path, tiny_lmdb):
    net = GOOD_NET % {"db": tiny_lmdb}
    net += ('layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" '
            'include { phase: TEST } }')
    net_path = write(tmp_path / "net.prototxt", net)
    solver = write(tmp_path / "solver.prototxt",
                   f'net: "{net_path}" base_lr: 0.01 lr_policy: "fixed" max_iter: 4 display: 2 '
                   f'test_iter: 1 test_interval: 2 snapshot_prefix: "{tmp_path}/run"')
    code, output = run(["train", "--solver", solver, "--tensorboard", str(tmp_path / "tb")])
    assert code == 0, output
    got = scalars(tmp_path / "tb")
    assert [step for step, _ in got["train/loss"]] == [0, 2, 4]
    assert [step for step, _ in got["train/lr"]] == [0, 2]
    assert [step for step, _ in got["train/images_per_second"]] == [2]
    assert [step for step, _ in got["test0/acc"]] == [0, 2, 4]
    assert all(0 <= value <= 1 for _, value in got["test0/acc"])
    # The same rows as the metrics CSV, which holds no images/s column.
    lines = (tmp_path / "run_log.csv").read_text().splitlines()
    assert lines[0] == "iteration,seconds,lr,train_loss,test0/loss,test0/acc"


def test_csv_and_caffe_log_to_tensorboard(tmp_path):
    csv_path = tmp_path / "run_log.csv"
    csv_path.write_text("iteration,seconds,lr,train_loss,test0/accuracy\n"
                        "0,0.5,,,0.1\n0,0.6,0.01,2.3,\n100,9.0,0.01,0.7,\n100,9.5,,,0.9\n")
    assert csv_to_tensorboard(str(csv_path), str(tmp_path / "a")) == 4
    got = scalars(tmp_path / "a")
    assert got["train/loss"] == [(0, pytest.approx(2.3)), (100, pytest.approx(0.7))]
    assert got["test0/accuracy"] == [(0, pytest.approx(0.1)), (100, pytest.approx(0.9))]

    code, output = run(["tensorboard", os.path.join(CORPUS, "good_caffe.log"),
                        str(tmp_path / "b")])
    assert code == 0, output
    got = scalars(tmp_path / "b")
    assert got["train/loss"][0] == (0, pytest.approx(2.3))
    assert got["train/lr"][0] == (0, pytest.approx(0.01))
    assert got["test0/accuracy"][0] == (0, pytest.approx(0.1))


def test_tensorboard_errors_are_one_line(tmp_path):
    line = one_error_line(*run(["tensorboard", os.path.join(CORPUS, "not_metrics.csv"),
                                str(tmp_path / "tb")]))
    assert "not a confnet metrics CSV" in line
    line = one_error_line(*run(["tensorboard", os.path.join(CORPUS, "no_training.log"),
                                str(tmp_path / "tb")]))
    assert "no training lines found" in line
