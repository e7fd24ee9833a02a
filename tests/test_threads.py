"""Thread control: --threads / CONFNET_THREADS set numpy's BLAS pool; auto follows idle cores."""

import os
import subprocess
import sys

import numpy as np
import pytest
import threadpoolctl
from click.testing import CliRunner

from confnet import threads
from confnet.cli import main
from confnet.errors import ConfnetError


def blas_threads():
    return {info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def restore_blas(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    with threadpoolctl.threadpool_limits(None):   # restores the pool sizes afterwards
        yield
    threads.request(None)


@pytest.mark.parametrize("text, count", [("3", 3), (" auto ", 0), ("0", 0), ("", 0), (2, 2)])
def test_parse(text, count):
    assert threads.parse(text, "x") == count


@pytest.mark.parametrize("text", ["-1", "two", "1.5"])
def test_parse_rejects_non_counts(text):
    with pytest.raises(ConfnetError, match="x: .* is not a thread count"):
        threads.parse(text, "x")


def test_explicit_count_limits_blas():
    assert threads.configure(1) == 1
    assert blas_threads() == {1}
    assert threads.count() == 1


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(threads.ENV, "1")
    threads.request(None)
    assert threads.configure() == 1 and blas_threads() == {1}


def test_option_wins_over_environment(monkeypatch):
    monkeypatch.setenv(threads.ENV, "2")
    threads.request("1")
    assert threads.configure() == 1


@pytest.mark.parametrize("idle, cores, count", [(2.0, 2, 2), (0.9, 2, 1), (0.1, 2, 1),
                                                (1.6, 2, 2), (7.2, 4, 4), (None, 4, 4)])
def test_auto_uses_idle_cores(monkeypatch, idle, cores, count):
    monkeypatch.setattr(threads, "idle_cores", lambda: idle)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    threads.request(None)
    assert threads.configure() == count


def test_idle_cores_reads_the_machine():
    idle = threads.idle_cores(0.02)
    assert idle is None or 0 <= idle <= threads.os.cpu_count() + 0.01


NET = """layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        inner_product_param { num_output: 2 } }"""


def test_cli_option_after_the_command(tmp_path):
    model = tmp_path / "net.prototxt"
    model.write_text(NET)
    result = CliRunner().invoke(main, ["time", "--model", str(model), "--iterations", "1",
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert blas_threads() == {1}


def test_cli_bad_value_is_one_line():
    result = CliRunner().invoke(main, ["--threads", "none", "time", "--model", "m"])
    assert result.exit_code == 1
    assert result.output.strip() == ("confnet: error: --threads: 'none' is not a thread count; "
                                     "give a whole number (1, 2, ...) or 'auto' (0)")


def test_split_runs_each_part_once_in_parallel(monkeypatch):
    monkeypatch.setitem(threads._state, "count", 3)
    seen = []
    threads.split(10, lambda a, b: seen.append((a, b)), threads._MIN_SPLIT_BYTES)
    assert sorted(seen) == [(0, 3), (3, 6), (6, 10)]
    seen.clear()
    threads.split(10, lambda a, b: seen.append((a, b)), threads._MIN_SPLIT_BYTES - 1)
    assert seen == [(0, 10)]   # small: in the calling thread


def test_split_raises_a_worker_error(monkeypatch):
    monkeypatch.setitem(threads._state, "count", 2)

    def fail_late(a, b):
        if a:
            raise ValueError("part")
    with pytest.raises(ValueError, match="part"):
        threads.split(4, fail_late, threads._MIN_SPLIT_BYTES)


def test_elementwise_covers_every_element_once(monkeypatch):
    monkeypatch.setitem(threads._state, "count", 3)
    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
    x = np.arange(-10.0, 11.0).reshape(3, 7)
    out = np.full_like(x, np.nan)
    threads.elementwise(lambda o, a: np.maximum(a, 0, out=o), out, x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))


@pytest.mark.parametrize("preset, want", [(None, threads.BLAS_SPIN[1]), ("25", "25")])
def test_import_sets_the_blas_spin_unless_set(preset, want):
    # A fresh interpreter: the variable must be in place before numpy loads OpenBLAS.
    env = {k: v for k, v in os.environ.items() if k != threads.BLAS_SPIN[0]}
    if preset is not None:
        env[threads.BLAS_SPIN[0]] = preset
    code = ("import sys, os, confnet; assert 'numpy' in sys.modules; "
            f"print(os.environ['{threads.BLAS_SPIN[0]}'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == want
