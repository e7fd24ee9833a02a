"""tools/bench_cpu.py and tools/bench_layers_cpu.py run and print their tables (the timings
themselves are not checked: they belong to the machine)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(*args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", args[0]), *args[1:]],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_bench_layers_prints_every_layer_and_the_total():
    lines = run_tool("bench_layers_cpu.py", "--net", "lenet", "--repeat", "1", "--threads", "1",
                     "--products")
    assert lines[0] == "lenet, batch 64, wall ms, median of 1, 1 thread(s)"
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == ["conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "all"]
    # conv1: 20 outputs of 24 x 24 per image, 25 multiply-adds each, forward and dW only.
    assert rows["conv1"][3] == str(round(2 * 64 * 20 * 24 * 24 * 25 * 2 / 1e6))
    assert all(float(value) > 0 for value in rows["all"][:3])
    # Products: convolutions (conv1's through host_blas) and inner products make some, MAX
    # pooling none.
    assert all(float(rows[name][6]) > 0 for name in ("conv1", "conv2", "ip1"))
    assert rows["pool1"][6] == "0.00"


def test_bench_layers_beside_pytorch():
    pytest.importorskip("torch")
    lines = run_tool("bench_layers_cpu.py", "--net", "lenet", "--repeat", "1", "--torch",
                     "--only", "conv2")
    assert lines[1].split()[-2:] == ["ms", "ratio"]
    conv2 = lines[2].split()
    assert conv2[0] == "conv2" and float(conv2[-2]) > 0
    assert float(conv2[-1]) == pytest.approx(float(conv2[3]) / float(conv2[-2]), abs=0.01)


def test_bench_cpu_runs_one_net():
    lines = run_tool("bench_cpu.py", "--nets", "lenet", "--iters", "2", "--warmup", "1",
                     "--block", "1", "--pause", "0", "--threads", "1")
    assert any(line.split()[:1] == ["lenet"] for line in lines)
