"""tools/bench_gpu.py: PyTorch's twin of each benchmarked net has confnet's parameters, layer by
layer; the script runs on the emulator and prints its table."""

import importlib.util
import os
import shutil

import numpy as np
import pytest

from confnet.layers import TRAIN
from confnet.net import Net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_gpu", os.path.join(ROOT, "tools", "bench_gpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["lenet", "cifar10_quick"])
def test_the_pytorch_twin_has_the_same_parameters_and_flops(name, tmp_path):
    torch = pytest.importorskip("torch")
    bench = load_bench()
    spec = bench.NETS[name]
    source = str(tmp_path / "lmdb")
    bench.make_lmdb(source, spec.image, 4)
    param = bench.train_layers(spec, source, 2)
    net = Net(param, TRAIN)
    shape = bench.input_shape(spec, param)
    ours = [tuple(b.shape) for layer in net.layers for b in layer.blobs]
    twin = bench.torch_model(param, shape)
    assert [tuple(p.shape) for p in twin.parameters()] == ours
    assert tuple(twin(torch.zeros(2, *shape)).shape) == (2, 10)
    # The floor counts each convolution and inner product: N x C_out x H x W x C_in x k x k.
    # 2 FLOP per multiply-add, x 3 for forward and backward.
    batch = 2
    macs = sum(batch * np.prod(net.blobs[top].shape[1:]) * np.prod(layer.blobs[0].shape[1:])
               for layer, tops in zip(net.layers, net.top_ids)
               if layer.type in ("Convolution", "InnerProduct") for top in tops)
    assert bench.train_flops(param, shape, batch) == 6 * macs


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="the CUDA emulator needs g++")
def test_runs_on_the_emulator(capsys):
    from confnet import gpu
    try:
        load_bench().main(["--gpu", "emu", "--quick", "--nets", "lenet"])
    finally:
        gpu.use(None)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("confnet graph")]
    assert len(rows) == 4 and all(float(row.split()[5]) > 0 for row in rows), out   # iter/s
    assert "LeNet, batch 2: " in out
    last = out.strip().splitlines()[-1]
    assert last == "confnet / PyTorch eager, best row: LeNet -"    # no PyTorch on the emulator
