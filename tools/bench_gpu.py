"""LeNet training speed on a GPU: confnet's kernels against PyTorch eager, side by side.

    python tools/bench_gpu.py [--gpu 0|emu] [--batch 64] [--iters 200] [--quick]

Both train the same net (models/lenet/train_val.prototxt: conv 20 5x5, max pool 2/2, conv 50
5x5, max pool 2/2 with Caffe's ceil rounding, ip 500, ReLU, dropout, ip 10, softmax loss) on the
same batch size with SGD (momentum 0.9, weight decay 5e-4), in float32, and each iteration copies
its batch from host memory to the device, as a training run does (confnet reads it from an LMDB
through its Data layer; PyTorch from a pinned host tensor). Time = wall time of ``iters``
iterations after ``warmup`` untimed ones, with the device synchronized at both ends.

The floor, per iteration at batch 64 (26x26 crops): forward 120 M multiply-adds (conv1 15.5 M,
conv2 78.4 M, ip1 25.6 M, ip2 0.3 M), so about 0.72 GFLOP with backward (3x forward), and a
few MB of memory traffic: tens of microseconds on an H200, so at this size both sides measure
launch overhead and host work more than the GPU's arithmetic.

``--gpu emu`` runs confnet on the CUDA-on-CPU emulator: it checks that the script works, and its
figures say nothing about speed. PyTorch runs only where it has a CUDA device.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def make_lmdb(path, n=256, seed=0):
    from confnet.data.datum import array_to_datum, datum_key
    from confnet.data.lmdb_io import LMDBWriter
    g = np.random.default_rng(seed)
    with LMDBWriter(path) as db:
        for i in range(n):
            img = g.integers(0, 256, (1, 28, 28), dtype=np.uint8)
            db.put(datum_key(i, f"{i}.png"), array_to_datum(img, i % 10).SerializeToString())


def confnet_speed(device, batch, iters, warmup, workdir):
    from confnet import gpu
    from confnet.proto import io
    from confnet.solver import get_solver
    gpu.use(device)
    make_lmdb(os.path.join(workdir, "train_lmdb"))
    net = io.read_net(os.path.join(ROOT, "models", "lenet", "train_val.prototxt"))
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = os.path.join(workdir, "train_lmdb")
            layer.data_param.batch_size = batch
    param = io.read_solver(os.path.join(ROOT, "models", "lenet", "solver.prototxt"))
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    param.ClearField("test_iter")
    param.test_interval = param.snapshot = param.display = 0
    param.ClearField("snapshot_prefix")
    solver = get_solver(param)
    solver.step(warmup)
    backend = gpu.current()
    backend.synchronize()
    start = time.perf_counter()
    solver.step(iters)
    backend.synchronize()
    elapsed = time.perf_counter() - start
    return iters / elapsed, backend.pool.peak, backend.describe()


def torch_speed(batch, iters, warmup):
    try:
        import torch
    except ImportError:
        return None, None, "PyTorch not installed"
    if not torch.cuda.is_available():
        return None, None, "PyTorch has no CUDA device here"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2, ceil_mode=True), nn.Flatten(),
        nn.Linear(800, 500), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(500, 10)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    host_x = torch.rand(batch, 1, 26, 26).pin_memory()
    host_y = torch.randint(0, 10, (batch,)).pin_memory()

    def step():
        x, y = host_x.cuda(non_blocking=True), host_y.cuda(non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return iters / elapsed, torch.cuda.max_memory_allocated(), torch.cuda.get_device_name()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", default="0", help="GPU id, or emu (checks the script only)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="50 iterations after 5")
    args = parser.parse_args(argv)
    if args.quick:
        args.iters, args.warmup = 50, 5
    if args.gpu == "emu":
        args.iters, args.warmup, args.batch = min(args.iters, 2), 1, min(args.batch, 4)
    with tempfile.TemporaryDirectory() as workdir:
        ours, our_peak, where = confnet_speed(args.gpu, args.batch, args.iters, args.warmup,
                                              workdir)
    theirs, their_peak, their_where = torch_speed(args.batch, args.iters, args.warmup)
    print(f"LeNet training, batch {args.batch}, {args.iters} iterations after {args.warmup}")
    print(f"{'':22}{'iter/s':>10}{'peak MiB':>10}  device")
    print(f"{'confnet':22}{ours:10.1f}{our_peak / 2**20:10.1f}  {where}")
    if theirs is None:
        print(f"{'PyTorch eager':22}{'-':>10}{'-':>10}  {their_where}")
    else:
        print(f"{'PyTorch eager':22}{theirs:10.1f}{their_peak / 2**20:10.1f}  {their_where}")
        print(f"confnet / PyTorch iterations/s: {ours / theirs:.2f}x")
    if args.gpu == "emu":
        print("(emulator: these figures check the script; they are not a speed)")


if __name__ == "__main__":
    main()
