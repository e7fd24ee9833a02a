"""One CPU training iteration of LeNet and CIFAR-10-quick: confnet beside PyTorch, as a ratio.

    python tools/bench_cpu.py [--iters 40] [--warmup 5] [--block 5] [--pause 0.2]
                              [--nets lenet,cifar10_quick] [--threads N] [--clock wall|cpu]
                              [--loaded]

DESIGN section 9's CPU target: a training iteration within 1.5x of PyTorch's CPU build on the
same machine. Both frameworks build the same net (float32, the same initial weights, the same
random batch) and take the same SGD step: momentum 0.9, weight decay, lr_mult 2 on biases.
confnet runs ``Solver.step(1)`` (clear gradients, forward, backward, update); PyTorch runs
zero_grad, forward, cross-entropy, backward and ``torch.optim.SGD.step``.

The nets are Caffe's geometry:
  lenet          1x28x28, conv 20 5x5, max pool 2/2, conv 50 5x5, max pool 2/2, ip 500, relu,
                 ip 10, softmax loss; batch 64.
  cifar10_quick  3x32x32, conv 32 5x5 pad 2, max pool 3/2, relu, conv 32 5x5 pad 2, relu,
                 ave pool 3/2, conv 64 5x5 pad 2, relu, ave pool 3/2, ip 64, ip 10; batch 100.
Caffe's pooling rounds the output size up, so PyTorch's pools use ceil_mode=True.

The two run in the same process, after a warm-up, in alternating blocks of ``--block``
iterations (which one goes first swaps every round); before each block the process sleeps
``--pause`` seconds so that the other library's idle threads stop spinning, then runs one
untimed iteration. The table shows the median of the timed iterations and, in brackets, the
spread between the 25th and 75th percentiles. On a busy machine, compare the medians of
several runs, or use ``--threads 1 --clock cpu``, which other programs disturb least. Before
timing, the losses of the first step are compared, which checks that the nets are the same.
Threads: PyTorch's intra-op threads and numpy's BLAS threads (read with threadpoolctl when it
is installed); ``--threads N`` sets both. Without it PyTorch keeps its default (one thread per
core) and confnet takes its own default, ``confnet --threads auto`` (confnet/threads.py: the
cores idle when it starts), chosen again at the start of each measurement.

``--loaded`` measures each net twice: on the machine as it is, then while a second process keeps
one core busy (a plain loop, started before and stopped after the loaded measurement, and
bounded to --busy-seconds in any case). The table then shows, per framework, both medians and
the slowdown loaded / quiet: how gracefully each one shares the machine.
"""

import argparse
import contextlib
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# confnet before numpy: importing it sets OpenBLAS's idle-thread spin (confnet/threads.py),
# which OpenBLAS reads when numpy loads it, as it is for the confnet command.
from confnet import threads as confnet_threads

# isort: split
import numpy as np
from google.protobuf import text_format

from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver

PARAMS = "param { lr_mult: 1 } param { lr_mult: 2 }"


def conv(name, bottom, num, filler, pad=0):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'{PARAMS} convolution_param {{ num_output: {num} kernel_size: 5 pad: {pad} '
            f'weight_filler {{ {filler} }} bias_filler {{ type: "constant" }} }} }}')


def pool(name, bottom, method, kernel, stride):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
            f'pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} }} }}')


def ip(name, bottom, num, filler):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'{PARAMS} inner_product_param {{ num_output: {num} weight_filler {{ {filler} }} '
            f'bias_filler {{ type: "constant" }} }} }}')


def relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}'


def net_text(shape, layers):
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "input" type: "Input" top: "data" top: "label" input_param {{ '
            f'shape {{ {dims} }} shape {{ dim: {shape[0]} }} }} }} '
            + " ".join(layers)
            + ' layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" '
              'top: "loss" }')


XAVIER = 'type: "xavier"'


def gauss(std):
    return f'type: "gaussian" std: {std}'


NETS = {
    "lenet": {
        "shape": (64, 1, 28, 28), "lr": 0.01, "decay": 0.0005, "scale": 1.0,
        "layers": [conv("conv1", "data", 20, XAVIER), pool("pool1", "conv1", "MAX", 2, 2),
                   conv("conv2", "pool1", 50, XAVIER), pool("pool2", "conv2", "MAX", 2, 2),
                   ip("ip1", "pool2", 500, XAVIER), relu("relu1", "ip1"),
                   ip("ip2", "ip1", 10, XAVIER)]},
    "cifar10_quick": {
        "shape": (100, 3, 32, 32), "lr": 0.001, "decay": 0.004, "scale": 50.0,
        "layers": [conv("conv1", "data", 32, gauss(0.0001), pad=2),
                   pool("pool1", "conv1", "MAX", 3, 2), relu("relu1", "pool1"),
                   conv("conv2", "pool1", 32, gauss(0.01), pad=2), relu("relu2", "conv2"),
                   pool("pool2", "conv2", "AVE", 3, 2),
                   conv("conv3", "pool2", 64, gauss(0.01), pad=2), relu("relu3", "conv3"),
                   pool("pool3", "conv3", "AVE", 3, 2),
                   ip("ip1", "pool3", 64, gauss(0.1)), ip("ip2", "ip1", 10, gauss(0.1))]},
}


def batch(spec, seed=0):
    """Random inputs (uniform in [0, 1) for LeNet's scaled digits, centred with a pixel-like
    spread for CIFAR's mean-subtracted images) and random labels 0..9."""
    g = np.random.default_rng(seed)
    x = g.random(spec["shape"], dtype=np.float32)
    if spec["scale"] != 1.0:
        x = (x - 0.5) * np.float32(2 * spec["scale"])
    return x, g.integers(0, 10, spec["shape"][0])


def confnet_solver(spec, x, labels):
    text = (f'net_param {{ name: "bench" {net_text(spec["shape"], spec["layers"])} }} '
            f'base_lr: {spec["lr"]} lr_policy: "fixed" momentum: 0.9 '
            f'weight_decay: {spec["decay"]} max_iter: 1000000 display: 0 random_seed: 1 '
            'solver_mode: CPU')
    solver = get_solver(text_format.Parse(text, pb.SolverParameter()))
    solver.net.blobs["data"].data[...] = x
    solver.net.blobs["label"].data[...] = labels
    return solver


def torch_step(torch, spec, solver, x, labels):
    """The same net in PyTorch, with confnet's initial weights; returns a function that runs
    one training iteration and returns the loss."""
    nn = torch.nn
    modules = []
    for layer in spec["layers"]:
        lp = text_format.Parse(layer, pb.NetParameter()).layer[0]
        if lp.type == "Convolution":
            cp = lp.convolution_param
            pad = cp.pad[0] if cp.pad else 0
            channels = solver.net.params[lp.name][0].data.shape[1]
            modules.append(nn.Conv2d(channels, cp.num_output, cp.kernel_size[0], padding=pad))
        elif lp.type == "Pooling":
            pp = lp.pooling_param
            kind = nn.MaxPool2d if pp.pool == pb.PoolingParameter.MAX else nn.AvgPool2d
            modules.append(kind(pp.kernel_size, pp.stride, ceil_mode=True))
        elif lp.type == "InnerProduct":
            weight = solver.net.params[lp.name][0].data
            if not any(isinstance(m, nn.Flatten) for m in modules):
                modules.append(nn.Flatten())
            modules.append(nn.Linear(weight.shape[1], weight.shape[0]))
        elif lp.type == "ReLU":
            modules.append(nn.ReLU(inplace=True))
    model = nn.Sequential(*modules)
    learned = [m for m in modules if isinstance(m, (nn.Conv2d, nn.Linear))]
    names = [n for n in solver.net.layer_names if n in solver.net.params]
    with torch.no_grad():
        for module, name in zip(learned, names):
            weight, bias = solver.net.params[name]
            module.weight.copy_(torch.from_numpy(weight.data.copy()))
            module.bias.copy_(torch.from_numpy(bias.data.copy()))
    optimizer = torch.optim.SGD(
        [{"params": [m.weight for m in learned], "lr": spec["lr"]},
         {"params": [m.bias for m in learned], "lr": 2 * spec["lr"]}],
        lr=spec["lr"], momentum=0.9, weight_decay=spec["decay"])
    data, target = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(data), target)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def timed(fn, clock):
    start = clock()
    fn()
    return clock() - start


def run(name, spec, torch, args, clock):
    """Time confnet's and PyTorch's iterations in alternating blocks; returns the 25th, 50th
    and 75th percentiles in ms, one row per framework."""
    x, labels = batch(spec)
    solver = confnet_solver(spec, x, labels)
    fns = [lambda: solver.step(1)]
    if torch is not None:
        fns.append(torch_step(torch, spec, solver, x, labels))
        a, b = solver.step(1), fns[1]()
        if not np.isclose(a, b, rtol=1e-3, atol=1e-4):
            print(f"warning: {name}: first-step losses differ (confnet {a:.6f}, PyTorch "
                  f"{b:.6f}): the two nets are not the same", file=sys.stderr)
    for _ in range(args.warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    rounds = -(-args.iters // args.block)
    for r in range(rounds):
        for k in (range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))):
            # Idle BLAS / OpenMP threads of the other library spin for a while after its
            # last call and would steal this one's cores: let them go to sleep first.
            time.sleep(args.pause)
            fns[k]()
            times[k] += [timed(fns[k], clock) for _ in range(args.block)]
    return [1000 * np.percentile(t[:args.iters], [25, 50, 75]) for t in times]


def thread_settings(torch, threads):
    """Set the thread counts (``threads``: both; 0: PyTorch's default and confnet's auto
    choice, made now) and describe them."""
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    if threads and torch is not None:
        torch.set_num_threads(threads)
    if threadpoolctl is not None:
        confnet_threads.configure(threads)
    parts = []
    if torch is not None:
        parts.append(f"torch {torch.__version__}: {torch.get_num_threads()} threads")
    if threadpoolctl is None:
        parts.append("numpy BLAS threads: unknown (pip install threadpoolctl to see them)")
    else:
        blas = [f"{info['internal_api']} {info.get('version') or ''} "
                f"{info['num_threads']} threads".replace("  ", " ")
                for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
        parts.append("numpy BLAS: " + (", ".join(blas) or "none found"))
    return "; ".join(parts)


def _busy(stop, seconds):
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end:
        sum(range(10000))


@contextlib.contextmanager
def one_core_busy(seconds):
    """A second process keeps one core busy inside the block (and for ``seconds`` at most)."""
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=_busy, args=(stop, seconds), daemon=True)
    process.start()
    time.sleep(0.5)   # let the scheduler see it before threads are chosen and timed
    try:
        yield
    finally:
        stop.set()
        process.join(5)
        if process.is_alive():
            process.terminate()


def cell(q):
    return f"{q[1]:7.2f} [{q[0]:.1f}-{q[2]:.1f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=40, help="timed iterations per framework")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--block", type=int, default=5,
                        help="iterations timed in a row before switching framework")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds of sleep before each block (see above)")
    parser.add_argument("--nets", default=",".join(NETS),
                        help=f"comma-separated, from: {', '.join(NETS)}")
    parser.add_argument("--threads", type=int, default=0,
                        help="set PyTorch's and numpy BLAS's thread counts (default: PyTorch's "
                             "own, confnet's auto)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: CPU time of the process (all its "
                             "threads), less sensitive to other programs on a busy machine")
    parser.add_argument("--loaded", action="store_true",
                        help="also measure while a second process keeps one core busy")
    parser.add_argument("--busy-seconds", type=float, default=600,
                        help="the busy process stops after this long in any case")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed, so there is nothing to compare with: timing confnet "
              "alone. For the ratio, install PyTorch's CPU build (pip install torch; it is not "
              "a confnet dependency).", file=sys.stderr)
    names = args.nets.split(",")
    for name in names:
        if name not in NETS:
            parser.error(f"unknown net '{name}'; choose from {', '.join(NETS)}")
    print(f"threads: {thread_settings(torch, args.threads)}")
    print(f"{args.iters} timed iterations each after {args.warmup} warm-up, in alternating "
          f"blocks of {args.block}; {args.clock} ms/iter as median [25th-75th percentile]")
    quiet = {name: run(name, NETS[name], torch, args, clock) for name in names}
    print(f"{'net':14} {'confnet ms/iter':>22} {'PyTorch ms/iter':>22} {'ratio':>6}")
    for name in names:
        print_row(name, quiet[name])
    if not args.loaded:
        return
    with one_core_busy(args.busy_seconds):
        print(f"loaded (one core busy), threads: {thread_settings(torch, args.threads)}")
        loaded = {name: run(name, NETS[name], torch, args, clock) for name in names}
    print(f"{'net':14} {'confnet quiet':>13} {'loaded':>8} {'slowdown':>8}   "
          f"{'PyTorch quiet':>13} {'loaded':>8} {'slowdown':>8}")
    for name in names:
        cells = []
        for q, lo in zip(quiet[name], loaded[name]):
            cells.append(f"{q[1]:13.2f} {lo[1]:8.2f} {lo[1] / q[1]:8.2f}")
        print(f"{name:14} " + "   ".join(cells))


def print_row(name, results):
    ours = results[0]
    if len(results) > 1:
        print(f"{name:14} {cell(ours):>22} {cell(results[1]):>22} "
              f"{ours[1] / results[1][1]:6.2f}")
    else:
        print(f"{name:14} {cell(ours):>22} {'n/a':>22} {'n/a':>6}")


if __name__ == "__main__":
    main()
