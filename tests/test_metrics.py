"""Metrics CSV: the solver's writer, parse-log on Caffe's and confnet's logs, and the plot."""

import csv
import math

import pytest
from click.testing import CliRunner

from confnet import metrics
from confnet.cli import main
from confnet.errors import ConfnetError

CAFFE_LOG = """\
I0415 10:00:00.000000  1234 caffe.cpp:218] Starting Optimization
I0415 10:00:00.500000  1234 solver.cpp:330] Iteration 0, Testing net (#0)
I0415 10:00:01.000000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.0975
I0415 10:00:01.000100  1234 solver.cpp:397]     Test net output #1: loss = 2.30823 (* 1 = 2.30823 loss)
I0415 10:00:01.250000  1234 solver.cpp:218] Iteration 0 (0 iter/s, 0.75s/100 iters), loss = 2.31
I0415 10:00:01.250100  1234 solver.cpp:237]     Train net output #0: loss = 2.31 (* 1 = 2.31 loss)
I0415 10:00:01.250200  1234 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I0415 10:00:03.000000  1234 solver.cpp:218] Iteration 100 (57.1 iter/s, 1.75s/100 iters), loss = 0.21
I0415 10:00:03.000100  1234 sgd_solver.cpp:105] Iteration 100, lr = 0.00992565
I0415 23:59:59.000000  1234 solver.cpp:330] Iteration 200, Testing net (#0)
I0416 00:00:01.000000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.97
I0416 00:00:01.000000  1234 solver.cpp:397]     Test net output #1: loss = 0.0911 (* 1 = 0.0911 loss)
I0416 00:00:01.500000  1234 solver.cpp:330] Iteration 200, Testing net (#1)
I0416 00:00:02.000000  1234 solver.cpp:397]     Test net output #0: top5 = 0.5
I0416 00:00:02.000000  1234 solver.cpp:397]     Test net output #1: top5 = 0.25
I0416 00:00:03.000000  1234 solver.cpp:218] Iteration 200, loss = -nan
"""


def test_parse_caffe_log():
    columns, rows = metrics.parse_log(CAFFE_LOG.splitlines())
    assert columns == ["iteration", "seconds", "lr", "train_loss", "test0/accuracy",
                       "test0/loss", "test1/top5[0]", "test1/top5[1]"]
    assert [(r["iteration"], r.get("train_loss"), r.get("test0/accuracy")) for r in rows][:4] == [
        (0, None, 0.0975), (0, 2.31, None), (100, 0.21, None), (200, None, 0.97)]
    assert rows[0]["seconds"] == 0.5 and rows[0]["test0/loss"] == pytest.approx(2.30823)
    assert rows[1]["lr"] == 0.01 and rows[1]["seconds"] == pytest.approx(1.25)
    assert rows[3]["seconds"] == pytest.approx(14 * 3600 - 1)      # over midnight
    assert rows[4]["test1/top5[0]"] == 0.5 and rows[4]["test1/top5[1]"] == 0.25
    assert math.isnan(rows[5]["train_loss"])


def test_parse_log_without_training_lines():
    with pytest.raises(ConfnetError, match="no training lines"):
        metrics.parse_log(["I0415 10:00:00.000000  1 net.cpp:1] Creating layer x"], "x.log")


def test_writer_flushes_every_row_and_resumes(tmp_path):
    path = tmp_path / "sub" / "run_log.csv"
    columns = metrics.COLUMNS + ["test0/accuracy"]
    writer = metrics.CSVWriter(path, columns)
    writer.write(0, 0.5, **{"test0/accuracy": 0.1})
    writer.write(0, 0.75, lr=0.01, train_loss=2.3)
    writer.write(10, 2.0, lr=0.01, train_loss=1.5)
    assert path.read_text().splitlines()[1:] == ["0,0.500,,,0.1", "0,0.750,0.01,2.3,",
                                                 "10,2.000,0.01,1.5,"]   # before close
    writer.close()
    resumed = metrics.CSVWriter(path, columns, resume_at=10)
    resumed.write(10, 1.0, lr=0.001, train_loss=1.4)
    resumed.close()
    _, rows = metrics.read_csv(path)
    assert [(r["iteration"], r["seconds"], r["train_loss"]) for r in rows] == [
        ("0", "0.500", ""), ("0", "0.750", "2.3"), ("10", "1.750", "1.4")]
    other = metrics.CSVWriter(path, metrics.COLUMNS, resume_at=10)   # other columns: afresh
    other.close()
    assert path.read_text() == "iteration,seconds,lr,train_loss\n"


def _train(tmp_path, tiny_lmdb, extra=""):
    net = tmp_path / "net.prototxt"
    net.write_text(f"""
layer {{ name: "d" type: "Data" top: "data" top: "label"
        data_param {{ source: "{tiny_lmdb}" batch_size: 4 }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
""")
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net}" test_iter: 2 test_interval: 3 base_lr: 0.01 '
                      f'lr_policy: "inv" gamma: 0.1 power: 0.75 max_iter: 6 display: 2 '
                      f'snapshot_prefix: "{tmp_path}/run" {extra}')
    result = CliRunner().invoke(main, ["train", "--solver", str(solver)])
    assert result.exit_code == 0, result.output
    return result.output


def test_solver_csv_matches_parsed_log(tmp_path, tiny_lmdb):
    log = _train(tmp_path, tiny_lmdb)
    assert "Writing metrics to" in log
    columns, rows = metrics.read_csv(tmp_path / "run_log.csv")
    parsed_columns, parsed = metrics.parse_log(log.splitlines())
    assert columns == parsed_columns == metrics.COLUMNS + ["test0/acc", "test0/loss"]
    assert [r["iteration"] for r in rows] == ["0", "0", "2", "3", "4", "6", "6"]
    strip = [{k: v for k, v in r.items() if k != "seconds" and v != ""} for r in rows]
    as_text = [{k: metrics._format(v) for k, v in r.items() if k != "seconds"} for r in parsed]
    assert strip == as_text
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds)


def test_parse_log_command(tmp_path):
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE_LOG)
    out = tmp_path / "caffe.csv"
    result = CliRunner().invoke(main, ["parse-log", str(log), str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert rows[0]["test0/accuracy"] == "0.0975" and rows[2]["train_loss"] == "0.21"


def test_plot_png(tmp_path):
    pytest.importorskip("matplotlib")
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE_LOG)
    CliRunner().invoke(main, ["parse-log", str(log), str(tmp_path / "m.csv")])
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "m.csv"), str(tmp_path / "m.png")])
    assert result.exit_code == 0, result.output
    data = (tmp_path / "m.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_plot_without_matplotlib_is_one_line(tmp_path, monkeypatch):
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE_LOG)
    CliRunner().invoke(main, ["parse-log", str(log), str(tmp_path / "m.csv")])
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "m.csv"), str(tmp_path / "m.png")])
    assert result.exit_code == 1
    assert "confnet: error: confnet plot needs matplotlib: pip install confnet[plot]" in \
        result.output
    assert not (tmp_path / "m.png").exists()
