"""The command line: bad input gets one clear line and a non-zero exit code, never a traceback."""

import importlib.util
import os
import shutil

import pytest
from click.testing import CliRunner

from confnet.cli import main

GOOD_NET = """name: "n"
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "%(db)s" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def run(args):
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def write(path, text):
    path.write_text(text)
    return str(path)


def solver_for(tmp_path, net_text, extra=""):
    net = write(tmp_path / "net.prototxt", net_text)
    return write(tmp_path / "solver.prototxt",
                 f'net: "{net}" base_lr: 0.01 lr_policy: "fixed" max_iter: 2 {extra}')


def one_error_line(code, output):
    assert code == 1, output
    lines = [line for line in output.splitlines() if line.startswith("confnet: error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_typo_field_names_file_line_col(tmp_path, tiny_lmdb):
    net = GOOD_NET % {"db": tiny_lmdb}
    net = net.replace("inner_product_param { num_output", "inner_product_param { num_ouptut")
    line = one_error_line(*run(["train", "--solver", solver_for(tmp_path, net)]))
    assert "net.prototxt:5:" in line and "num_ouptut" in line


def test_unknown_layer_type_lists_known(tmp_path, tiny_lmdb):
    net = (GOOD_NET % {"db": tiny_lmdb}).replace('"InnerProduct"', '"InnerProdukt"')
    line = one_error_line(*run(["train", "--solver", solver_for(tmp_path, net)]))
    assert "unknown layer type 'InnerProdukt'" in line and "Convolution" in line
    assert "layer 'ip'" in line


def test_missing_bottom_blob(tmp_path, tiny_lmdb):
    net = (GOOD_NET % {"db": tiny_lmdb}).replace('bottom: "ip" bottom', 'bottom: "fc" bottom')
    line = one_error_line(*run(["train", "--solver", solver_for(tmp_path, net)]))
    assert "layer 'loss'" in line and "bottom blob 'fc'" in line


def test_missing_lmdb(tmp_path):
    net = GOOD_NET % {"db": str(tmp_path / "nowhere_lmdb")}
    line = one_error_line(*run(["train", "--solver", solver_for(tmp_path, net)]))
    assert "nowhere_lmdb" in line


def test_solver_without_net(tmp_path):
    solver = write(tmp_path / "solver.prototxt", 'base_lr: 0.01 lr_policy: "fixed"')
    line = one_error_line(*run(["train", "--solver", solver]))
    assert "net" in line


def test_missing_solver_file(tmp_path):
    line = one_error_line(*run(["train", "--solver", str(tmp_path / "nope.prototxt")]))
    assert "nope.prototxt" in line


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_example(command):
    code, output = run([command, "--help"])
    assert code == 0 and "Example:" in output


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F"),
                                           ("zsh", "#compdef confnet"),
                                           ("fish", "complete --no-files --command confnet")])
def test_completion_scripts(shell, marker):
    code, output = run(["completion", shell])
    assert code == 0 and marker in output and "_CONFNET_COMPLETE" in output


def test_usage_mistakes_are_one_line():
    code, output = run(["train"])
    assert code == 2 and output.strip() == (
        "confnet: error: Missing option '--solver'; see 'main train --help'")


def test_os_errors_are_one_line(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "db"))
    monkeypatch.setattr("confnet.data.convert.convert_imageset", refuse)
    line = one_error_line(*run(["convert-data", str(tmp_path), str(tmp_path / "db")]))
    assert line == (f"confnet: error: {tmp_path / 'db'}: Permission denied; check the path and "
                    "its permissions")


def test_train_test_and_snapshot_resume(tmp_path, tiny_lmdb):
    net = write(tmp_path / "net.prototxt", GOOD_NET % {"db": tiny_lmdb})
    solver = write(tmp_path / "solver.prototxt",
                   f'net: "{net}" base_lr: 0.01 lr_policy: "fixed" max_iter: 4 snapshot: 2 '
                   f'display: 1 snapshot_prefix: "{tmp_path}/run"')
    code, output = run(["train", "--solver", solver])
    assert code == 0, output
    assert (tmp_path / "run_iter_4.caffemodel").exists()
    code, output = run(["train", "--solver", solver, "--snapshot",
                        str(tmp_path / "run_iter_2.solverstate")])
    assert code == 0, output
    code, output = run(["test", "--model", net, "--weights",
                        str(tmp_path / "run_iter_4.caffemodel"), "--iterations", "2"])
    assert code == 0 and "loss = " in output


def test_convert_and_compute_mean(tmp_path):
    from PIL import Image
    for label in ("cat", "dog"):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (5, 4), 40 * i).save(tmp_path / "img" / label / f"{i}.png")
    (tmp_path / "img" / "dog" / "broken.png").write_bytes(b"not a png")
    code, output = run(["convert-data", str(tmp_path / "img"), str(tmp_path / "db"), "--gray"])
    assert code == 0, output
    assert "broken.png" in output
    assert (tmp_path / "db" / "labels.txt").read_text().split() == ["cat", "dog"]
    code, output = run(["compute-mean", str(tmp_path / "db"), str(tmp_path / "mean.binaryproto")])
    assert code == 0, output
    assert (tmp_path / "mean.binaryproto").exists()


STAGED_NET = """name: "staged"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "deep" type: "InnerProduct" bottom: "x" top: "y"
        include { stage: "deep" min_level: 1 } inner_product_param { num_output: 4 } }
layer { name: "shallow" type: "InnerProduct" bottom: "x" top: "y"
        exclude { stage: "deep" } inner_product_param { num_output: 2 } }
"""


def test_level_and_stage_select_layers(tmp_path):
    net = write(tmp_path / "staged.prototxt", STAGED_NET)
    code, output = run(["time", "--model", net, "--iterations", "1"])
    assert code == 0 and "shallow" in output and "deep" not in output
    code, output = run(["time", "--model", net, "--iterations", "1", "--stage", "deep",
                        "--level", "1"])
    assert code == 0 and "deep" in output and "shallow" not in output


def test_python_layers_need_the_flag(tmp_path, monkeypatch):
    (tmp_path / "mylayers.py").write_text(
        "class Double:\n"
        "    def setup(self, bottom, top): pass\n"
        "    def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)\n"
        "    def forward(self, bottom, top): top[0].data[...] = 2 * bottom[0].data\n"
        "    def backward(self, top, propagate_down, bottom): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = write(tmp_path / "py.prototxt", """name: "py"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "double" type: "Python" bottom: "x" top: "y"
        python_param { module: "mylayers" layer: "Double" } }
""")
    line = one_error_line(*run(["time", "--model", net, "--iterations", "1"]))
    assert "--allow-python-layers" in line
    code, output = run(["--allow-python-layers", "time", "--model", net, "--iterations", "1"])
    assert code == 0, output


def test_time_runs_backward_of_a_deploy_net(tmp_path):
    net = write(tmp_path / "deploy.prototxt", """name: "deploy"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 1 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "prob" type: "Softmax" bottom: "c" top: "prob" }
""")
    code, output = run(["time", "--model", net, "--iterations", "2"])
    assert code == 0, output
    rows = {line.split()[0]: line.split() for line in output.splitlines() if line.strip()}
    assert rows["conv"][3] != "-" and rows["prob"][3] != "-"   # backward ms column


DEMO_WRITES = {"models/lenet/solver.prototxt", "models/lenet/train_val.prototxt",
               "models/lenet/deploy.prototxt", "data/mnist/train", "data/mnist/test",
               "data/mnist_train_lmdb", "data/mnist_test_lmdb", "examples/lenet/lenet_log.csv",
               "examples/lenet/lenet_iter_1000.solverstate",
               "examples/lenet/lenet_iter_3000.caffemodel"}


def test_help_examples_name_files_the_demo_writes():
    """Every examples/ or data/mnist path in a --help example is one the demo makes."""
    import re
    for name in main.commands:
        _, output = run([name, "--help"])
        for path in re.findall(r"\b(?:examples|data/mnist|models/lenet)[\w./]*", output):
            inside = any(path.startswith(folder + "/") for folder in ("data/mnist/test",
                                                                       "data/mnist/train"))
            assert path in DEMO_WRITES or inside or path.startswith("data/mnist_mean"), (
                name, path)


def test_group_flags_after_the_command(tmp_path, tiny_lmdb):
    solver = solver_for(tmp_path, GOOD_NET % {"db": tiny_lmdb},
                        "display: 1 snapshot_after_train: false")
    code, output = run(["train", "--solver", solver, "-q"])
    assert code == 0, output
    assert "Iteration" not in output
    result = CliRunner().invoke(main, ["time", "--model", str(tmp_path / "no.prototxt"),
                                       "--debug"])
    assert "no such file" in str(result.exception)   # --debug: the exception, not one line


def test_training_ends_saying_where_the_weights_are(tmp_path, tiny_lmdb):
    net = GOOD_NET % {"db": tiny_lmdb}
    solver = solver_for(tmp_path, net, f'snapshot_prefix: "{tmp_path}/run"')
    code, output = run(["train", "--solver", solver])
    assert code == 0, output
    last = output.splitlines()[-1]
    assert last == f"Final weights (iteration 2): {tmp_path}/run_iter_2.caffemodel"
    code, output = run(["train", "--solver",
                        solver_for(tmp_path, net, "snapshot_after_train: false")])
    assert output.splitlines()[-1] == ("The final weights (iteration 2) are not saved: the "
                                       "solver has no snapshot_prefix")


def test_files_that_are_not_images_are_counted(tmp_path):
    from PIL import Image
    (tmp_path / "img" / "cat").mkdir(parents=True)
    Image.new("L", (5, 4)).save(tmp_path / "img" / "cat" / "a.png")
    (tmp_path / "img" / "cat" / "notes.txt").write_text("x")
    code, output = run(["convert-data", str(tmp_path / "img"), str(tmp_path / "db")])
    assert code == 0, output
    assert "1 images written, 0 unreadable skipped, 1 files that are not images ignored" in output


@pytest.mark.skipif(importlib.util.find_spec("pycuda") is not None, reason="pycuda is installed")
def test_solver_mode_gpu_without_a_gpu_warns_and_trains_on_the_cpu(tmp_path, tiny_lmdb):
    solver = solver_for(tmp_path, GOOD_NET % {"db": tiny_lmdb},
                        "solver_mode: GPU device_id: 0 snapshot_after_train: false")
    code, output = run(["train", "--solver", solver])
    assert code == 0, output
    assert "solver_mode is GPU, but GPU: pycuda is not installed" in output
    assert "running on the CPU" in output


def test_gpu_emu_trains_through_the_kernels(tmp_path, tiny_lmdb):
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("the CUDA emulator needs g++")
    solver = solver_for(tmp_path, GOOD_NET % {"db": tiny_lmdb},
                        "display: 1 snapshot_after_train: false")
    code, output = run(["train", "--solver", solver, "--gpu", "emu"])
    assert code == 0, output
    assert "Using CUDA emulator on the CPU" in output and "Iteration 1" in output
    assert "no device kernels" not in output


@pytest.mark.parametrize("flags, graphs", [([], True), (["--no-graph"], False)])
def test_gpu_emu_replays_iterations_unless_no_graph(tmp_path, tiny_lmdb, flags, graphs):
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("the CUDA emulator needs g++")
    solver = solver_for(tmp_path, GOOD_NET % {"db": tiny_lmdb}, "snapshot_after_train: false")
    with open(solver) as f:
        text = f.read()
    write(tmp_path / "solver.prototxt", text.replace("max_iter: 2", "max_iter: 4"))
    code, output = run(["train", "--solver", solver, "--gpu", "emu"] + flags)
    assert code == 0, output
    assert ("Captured the training iteration as a CUDA graph" in output) == graphs, output

