"""Training speed on a GPU: confnet's kernels against PyTorch, LeNet, CIFAR-10 quick and CaffeNet.

    python tools/bench_gpu.py [--gpu 0|emu] [--nets lenet,cifar10_quick,caffenet] [--quick]
                              [--batch N] [--iters N] [--warmup N] [--budget SECONDS]

Each net trains from its prototxt in models/ (the TRAIN phase of train_val.prototxt) at the
batch of its paper setting, in float32, with SGD (momentum and weight decay of its solver), in
eight configurations, one run each:

    confnet    cuda_graph off/on x allow_tf32 off/on (SolverParameter fields 10001, 10000)
    PyTorch    eager / CUDA graph x TF32 off/on (torch.backends.{cuda.matmul,cudnn}.allow_tf32)

PyTorch runs the same architecture, built layer by layer from the same prototxt (Convolution,
Pooling with Caffe's ceil rounding, LRN, ReLU, InnerProduct, Dropout, SoftmaxWithLoss), with
cudnn.benchmark; its CUDA-graph row is the standard static-input recipe: warm-up steps on a side
stream, then forward, backward and ``optimizer.step()`` captured once in ``torch.cuda.graph``
and replayed, each iteration first copying its batch into the static input. Every iteration
copies its batch from host memory to the device, as a training run does: confnet reads it from
an LMDB of random images of the net's input size through its Data layer (no mean file; the
crop and mirror of the prototxt kept); PyTorch from a pinned host tensor. Time = wall time of
``iters`` iterations after ``warmup`` untimed ones, the device synchronized at both ends.
Peak memory: confnet's caching pool (bytes handed out at the peak, above what was in use when
the run started: parameters, gradients, history, blobs, buffers); PyTorch's
``torch.cuda.max_memory_allocated`` since before the model was built. Ratios are to PyTorch
eager with the same TF32 setting. The column "ran" says what confnet reports it ran
(``Solver.graph_active``, ``confnet.gpu.blas.tf32_enabled()``).

The floor, per training iteration (forward multiply-adds of convolutions and inner products,
x 2 FLOP, x 3 for forward + backward; pooling, LRN and ReLU are memory-bound and not counted):

    LeNet, batch 64 (1x26x26 crops)        forward 1.87 M MAC/image    0.72 GFLOP/iter
    CIFAR-10 quick, batch 100 (3x32x32)    forward 12.4 M MAC/image     7.4 GFLOP/iter
    CaffeNet, batch 128 (3x227x227)        forward 724 M MAC/image      556 GFLOP/iter

On an H200 (about 67 TFLOP/s float32 without tensor cores, about 495 TFLOP/s dense TF32) that
is 11 us, 110 us and 8.3 ms of arithmetic (TF32: 1.5 us, 15 us, 1.1 ms): LeNet and CIFAR-10
quick measure launch overhead and host work more than the GPU, CaffeNet its kernels.

``--gpu emu`` runs confnet on the CUDA-on-CPU emulator: it checks that the script works, and its
figures say nothing about speed; it runs LeNet and CIFAR-10 quick at batch 2, one iteration
after three (so that the graph rows replay; CaffeNet only when named in --nets: minutes there),
and no PyTorch. PyTorch runs only
where it has a CUDA device. ``--quick`` shortens the runs (the GPU check uses it); ``--budget``
skips the rows that would start after that many seconds, so the table is printed within a
step's cap.
"""

import argparse
import gc
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@dataclass
class Bench:
    title: str
    folder: str           # in models/
    batch: int
    image: tuple          # (C, H, W) of the images in the LMDB
    iters: int            # timed iterations: full run, --quick
    quick_iters: int


NETS = {
    "lenet": Bench("LeNet", "lenet", 64, (1, 28, 28), 200, 50),
    "cifar10_quick": Bench("CIFAR-10 quick", "cifar10_quick", 100, (3, 32, 32), 100, 30),
    "caffenet": Bench("CaffeNet", "caffenet", 128, (3, 227, 227), 30, 10),
}
EMU_NETS = ("lenet", "cifar10_quick")
H200_FP32, H200_TF32 = 67e12, 495e12   # FLOP/s: the floor's denominators


@dataclass
class Row:
    name: str
    tf32: bool
    speed: float = None   # iterations per second
    peak: int = None      # bytes
    ran: str = ""
    note: str = ""


# -- the nets --------------------------------------------------------------------------------
def train_layers(bench, source, batch):
    """The TRAIN-phase NetParameter of ``bench`` reading ``source`` at ``batch``."""
    from confnet.net import filter_layers
    from confnet.proto import confnet_pb2 as pb
    from confnet.proto import io
    net = io.read_net(os.path.join(ROOT, "models", bench.folder, "train_val.prototxt"))
    kept = filter_layers(net, pb.NetState(phase=pb.TRAIN))
    del net.layer[:]
    net.layer.extend(kept)
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = source
            layer.data_param.batch_size = batch
            layer.transform_param.ClearField("mean_file")
    return net


def input_shape(bench, net):
    crop = next(layer.transform_param.crop_size for layer in net.layer if layer.type == "Data")
    c, h, w = bench.image
    return (c, crop, crop) if crop else (c, h, w)


def _first(values, default):
    return values[0] if len(values) else default


def walk(net, shape):
    """(layer, input shape (C, H, W) or (features,), output shape, forward MACs per image) for
    each computing layer of a straight-line net (Caffe's rounding of pooling)."""
    out = []
    for layer in net.layer:
        if layer.type in ("Data", "Accuracy", "SoftmaxWithLoss"):
            continue
        before, macs = shape, 0
        if layer.type == "Convolution":
            p = layer.convolution_param
            k, s, pad = _first(p.kernel_size, 1), _first(p.stride, 1), _first(p.pad, 0)
            c, h, w = shape
            h, w = ((d + 2 * pad - k) // s + 1 for d in (h, w))
            shape = (p.num_output, h, w)
            macs = p.num_output * h * w * (c // p.group) * k * k
        elif layer.type == "Pooling":
            p = layer.pooling_param
            c, h, w = shape
            shape = (c, *(_pooled(d, p.kernel_size, p.stride, p.pad) for d in (h, w)))
        elif layer.type == "InnerProduct":
            features = int(np.prod(shape))
            shape = (layer.inner_product_param.num_output,)
            macs = features * shape[0]
        elif layer.type not in ("ReLU", "LRN", "Dropout"):
            raise SystemExit(f"bench: layer type {layer.type} has no PyTorch twin here")
        out.append((layer, before, shape, macs))
    return out


def _pooled(size, kernel, stride, pad):
    """Caffe's pooled size: ceil rounding, the last window starting inside the padded input."""
    n = math.ceil((size + 2 * pad - kernel) / stride) + 1
    return n - 1 if pad and (n - 1) * stride >= size + pad else n


def train_flops(net, shape, batch):
    """FLOP per training iteration: 2 x forward MACs x 3 (forward + backward)."""
    return 6 * batch * sum(macs for _, _, _, macs in walk(net, shape))


def torch_model(net, shape):
    from torch import nn
    modules = []
    for layer, before, _, _ in walk(net, shape):
        t = layer.type
        if t == "Convolution":
            p = layer.convolution_param
            modules.append(nn.Conv2d(before[0], p.num_output, _first(p.kernel_size, 1),
                                     _first(p.stride, 1), _first(p.pad, 0), groups=p.group,
                                     bias=p.bias_term))
        elif t == "Pooling":
            p = layer.pooling_param
            pool = nn.MaxPool2d if p.pool == p.MAX else nn.AvgPool2d
            modules.append(pool(p.kernel_size, p.stride, p.pad, ceil_mode=True))
        elif t == "InnerProduct":
            if len(before) > 1:
                modules.append(nn.Flatten())
            modules.append(nn.Linear(int(np.prod(before)), layer.inner_product_param.num_output))
        elif t == "ReLU":
            modules.append(nn.ReLU(inplace=True))
        elif t == "LRN":
            p = layer.lrn_param
            modules.append(nn.LocalResponseNorm(p.local_size, p.alpha, p.beta, p.k))
        elif t == "Dropout":
            modules.append(nn.Dropout(layer.dropout_param.dropout_ratio))
    return nn.Sequential(*modules)


def make_lmdb(path, image, n, seed=0):
    from confnet.data.datum import array_to_datum, datum_key
    from confnet.data.lmdb_io import LMDBWriter
    g = np.random.default_rng(seed)
    with LMDBWriter(path) as db:
        for i in range(n):
            img = g.integers(0, 256, image, dtype=np.uint8)
            db.put(datum_key(i, f"{i}.png"), array_to_datum(img, i % 10).SerializeToString())


def solver_param(bench, net):
    from confnet.proto import io
    param = io.read_solver(os.path.join(ROOT, "models", bench.folder, "solver.prototxt"))
    for field in ("net", "train_net", "test_iter", "test_net", "snapshot_prefix"):
        param.ClearField(field)
    param.net_param.CopyFrom(net)
    param.test_interval = param.snapshot = param.display = 0
    param.snapshot_after_train = False
    return param


# -- the runs --------------------------------------------------------------------------------
def confnet_row(param, graph, tf32, iters, warmup):
    from confnet import gpu
    from confnet.gpu import blas
    from confnet.solver import get_solver
    row = Row(f"confnet graph {'on' if graph else 'off'}", tf32)
    backend = gpu.current()
    pool = backend.pool
    pool.peak = base = pool.in_use  # the pool's peak restarts: this run's, above what is in use
    p = type(param)()
    p.CopyFrom(param)
    p.cuda_graph, p.allow_tf32 = graph, tf32
    solver = get_solver(p)
    solver.step(warmup)
    backend.synchronize()
    start = time.perf_counter()
    solver.step(iters)
    backend.synchronize()
    row.speed = iters / (time.perf_counter() - start)
    row.peak = pool.peak - base
    row.ran = (f"graph {'on' if solver.graph_active else 'off'}, "
               f"tf32 {'on' if blas.tf32_enabled() else 'off'}")
    del solver
    gc.collect()                    # this run's blobs go back to the pool, which gives them
    pool.release_cached()           # back to the driver (for the runs after it, PyTorch's too)
    return row


def torch_row(model_of, batch, shape, param, graph, tf32, iters, warmup):
    import torch
    row = Row(f"PyTorch {'graph' if graph else 'eager'}", tf32)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = model_of().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=param.base_lr, momentum=param.momentum,
                          weight_decay=param.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    host_x = torch.rand(batch, *shape).pin_memory()
    host_y = torch.randint(0, 10, (batch,)).pin_memory()
    x, y = host_x.cuda(), host_y.cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def eager():
        x.copy_(host_x, non_blocking=True)
        y.copy_(host_y, non_blocking=True)
        step()

    run = eager
    if graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(captured):
            loss_fn(model(x), y).backward()
            opt.step()

        def run():
            x.copy_(host_x, non_blocking=True)
            y.copy_(host_y, non_blocking=True)
            captured.replay()
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        run()
    torch.cuda.synchronize()
    row.speed = iters / (time.perf_counter() - start)
    row.peak = torch.cuda.max_memory_allocated()
    row.ran = f"tf32 {'on' if tf32 else 'off'}"
    return row


def torch_missing():
    """Why PyTorch cannot run here, or None."""
    try:
        import torch
    except ImportError:
        return "PyTorch not installed"
    return None if torch.cuda.is_available() else "PyTorch has no CUDA device here"


def bench_net(bench, args, deadline, workdir):
    """The eight rows of one net (the rows that would start after ``deadline`` are skipped)."""
    batch = min(bench.batch, 2) if args.gpu == "emu" else (args.batch or bench.batch)
    iters = args.iters or (bench.quick_iters if args.quick else bench.iters)
    warmup = args.warmup if args.warmup is not None else max(3, iters // 10)
    if args.gpu == "emu":   # 3 warm-up iterations: the graph rows capture, then replay
        iters, warmup = 1, 3
    source = os.path.join(workdir, f"{bench.folder}_lmdb")
    make_lmdb(source, bench.image, max(2 * batch, 8))
    net = train_layers(bench, source, batch)
    shape = input_shape(bench, net)
    flops = train_flops(net, shape, batch)
    param = solver_param(bench, net)
    missing = "not compared on the emulator" if args.gpu == "emu" else torch_missing()
    jobs = [(lambda g=g, t=t: confnet_row(param, g, t, iters, warmup),
             f"confnet graph {'on' if g else 'off'}", t)
            for t in (False, True) for g in (False, True)]
    jobs += [(lambda g=g, t=t: torch_row(lambda: torch_model(net, shape), batch, shape, param,
                                         g, t, iters, warmup),
              f"PyTorch {'graph' if g else 'eager'}", t) for t in (False, True)
             for g in (False, True)]
    rows = []
    for run, name, tf32 in jobs:
        if name.startswith("PyTorch") and missing:
            rows.append(Row(name, tf32, note=missing))
        elif time.monotonic() > deadline:
            rows.append(Row(name, tf32, note="skipped: --budget spent"))
        else:
            try:
                rows.append(run())
            except Exception as e:  # noqa: BLE001 - one failing row must not cost the table
                rows.append(Row(name, tf32, note=f"failed: {type(e).__name__}: {e}"[:90]))
    return batch, iters, warmup, flops, rows


def print_table(bench, batch, iters, warmup, flops, rows, where):
    print(f"\n{bench.title}, batch {batch}: {flops / 1e9:.3g} GFLOP per iteration (H200 floor "
          f"{flops / H200_FP32 * 1e6:.3g} us float32, {flops / H200_TF32 * 1e6:.3g} us TF32); "
          f"{iters} iterations after {warmup}; {where}")
    print(f"{'':28}{'iter/s':>9}{'vs eager':>10}{'TFLOP/s':>9}{'peak MiB':>10}  ran / note")
    eager = {r.tf32: r.speed for r in rows if r.name == "PyTorch eager" and r.speed}
    for r in rows:
        label = f"{r.name}, tf32 {'on' if r.tf32 else 'off'}"
        if r.speed is None:
            print(f"{label:28}{'-':>9}{'-':>10}{'-':>9}{'-':>10}  {r.note}")
            continue
        ratio = f"{r.speed / eager[r.tf32]:.2f}x" if r.tf32 in eager else "-"
        print(f"{label:28}{r.speed:9.1f}{ratio:>10}{r.speed * flops / 1e12:9.2f}"
              f"{r.peak / 2**20:10.1f}  {r.ran}")


def summary(results):
    """One line (the GPU check's key figure): confnet's best row against PyTorch eager with the
    same TF32 setting, per net; "-" where there is no ratio."""
    parts = []
    for bench, rows in results:
        eager = {r.tf32: r.speed for r in rows if r.name == "PyTorch eager" and r.speed}
        ratios = [r.speed / eager[r.tf32] for r in rows
                  if r.name.startswith("confnet") and r.speed and r.tf32 in eager]
        parts.append(f"{bench.title} {max(ratios):.2f}x" if ratios else f"{bench.title} -")
    return "confnet / PyTorch eager, best row: " + ", ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", default="0", help="GPU id, or emu (checks the script only)")
    parser.add_argument("--nets", help=f"comma-separated, of {', '.join(NETS)} (default: all; "
                        f"on the emulator {', '.join(EMU_NETS)})")
    parser.add_argument("--batch", type=int, help="override every net's batch size")
    parser.add_argument("--iters", type=int, help="timed iterations (default per net)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first (default: a "
                        "tenth of --iters, at least 3)")
    parser.add_argument("--quick", action="store_true", help="short runs (10 to 50 iterations)")
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds; rows that would start later are skipped")
    args = parser.parse_args(argv)
    names = args.nets.split(",") if args.nets else list(EMU_NETS if args.gpu == "emu" else NETS)
    unknown = [n for n in names if n not in NETS]
    if unknown:
        parser.error(f"unknown net(s) {', '.join(unknown)}; known: {', '.join(NETS)}")
    from confnet import gpu
    gpu.use(args.gpu)
    where = gpu.current().describe()
    deadline = time.monotonic() + args.budget
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            bench = NETS[name]
            batch, iters, warmup, flops, rows = bench_net(bench, args, deadline, workdir)
            print_table(bench, batch, iters, warmup, flops, rows, where)
            results.append((bench, rows))
    if args.gpu == "emu":
        print("\n(emulator: these figures check the script; they are not a speed)")
    print(summary(results))


if __name__ == "__main__":
    main()
