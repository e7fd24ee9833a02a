"""Time forward and backward of the heavy layers of LeNet or CIFAR-10-quick on the CPU (float32),
one row per layer, beside the floor: the arithmetic and the bytes each layer cannot avoid.

    python tools/bench_layers_cpu.py [--net lenet|cifar10_quick] [--batch B] [--repeat 50]
                                     [--clock wall|cpu] [--threads N] [--only LAYER]
                                     [--products] [--torch]

LeNet (models/lenet, batch 64): conv1 1->20 5x5 on 28x28, pool1 MAX 2x2/2, conv2 20->50 5x5 on
12x12, pool2 MAX 2x2/2, ip1 800->500, ip2 500->10. CIFAR-10-quick (models/cifar10_quick, batch
100): conv1 3->32 5x5 pad 2 on 32x32, pool1 MAX 3x3/2, conv2 32->32 5x5 pad 2 on 16x16, pool2
AVE 3x3/2, conv3 32->64 5x5 pad 2 on 8x8, pool3 AVE 3x3/2, ip1 1024->64, ip2 64->10. conv1 does
not back-propagate to its input (the data), as in a training step.

Columns: forward and backward ms (median of --repeat), MFLOP of forward + backward (multiply-adds
count 2; pooling's comparisons or additions count 1), MB that must move at least (bottom, top,
their gradients and the parameters, read or written once), and the GFLOP/s reached. ``--clock
cpu`` measures the process's CPU time, which a busy machine disturbs less (with one thread it is
the work done). ``--only conv2`` runs one layer, e.g. under ``valgrind --tool=callgrind`` to
count instructions. ``--products`` adds the time of the matrix products alone: every
numpy.matmul (and confnet/host_blas.py product) the layer's forward and backward make is
recorded (operands as they were) and replayed on its own, so its operands are warm in the
cache: the floor that BLAS sets for this layer's way of computing (a layer cannot be faster
than its products). ``--torch`` adds PyTorch's time for the same layer (torch.nn.functional on
the same shapes, autograd backward, PyTorch's default threads; ``pip install torch``) and the
ratio confnet / PyTorch, timed right after confnet's. ``--threads`` sets confnet's thread count
(numpy's BLAS pool and confnet's own workers) as ``confnet --threads`` does; without it,
confnet's default (auto: the idle cores).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# confnet before numpy: importing it sets OpenBLAS's idle-thread spin (confnet/threads.py).
from confnet import threads

# isort: split
import numpy as np
from google.protobuf import text_format

from confnet.blob import Blob
from confnet.layers import TRAIN, create_layer
from confnet.proto import confnet_pb2 as pb

FILLERS = 'weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 }'
CIFAR_FILLERS = 'weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" }'


def conv(num, fillers, pad=0):
    """A 5x5 convolution's (type, settings)."""
    return "Convolution", (f"convolution_param {{ num_output: {num} kernel_size: 5 pad: {pad} "
                           f"{fillers} }}")


def pool(method, kernel, stride):
    return "Pooling", f"pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} }}"


def ip(num, fillers):
    return "InnerProduct", f"inner_product_param {{ num_output: {num} {fillers} }}"


# (name, (type, settings), bottom shape without the batch, whether dx is computed)
LENET = [
    ("conv1", conv(20, FILLERS), (1, 28, 28), False),
    ("pool1", pool("MAX", 2, 2), (20, 24, 24), True),
    ("conv2", conv(50, FILLERS), (20, 12, 12), True),
    ("pool2", pool("MAX", 2, 2), (50, 8, 8), True),
    ("ip1", ip(500, FILLERS), (50, 4, 4), True),
    ("ip2", ip(10, FILLERS), (500,), True),
]
CIFAR10_QUICK = [
    ("conv1", conv(32, CIFAR_FILLERS, pad=2), (3, 32, 32), False),
    ("pool1", pool("MAX", 3, 2), (32, 32, 32), True),
    ("conv2", conv(32, CIFAR_FILLERS, pad=2), (32, 16, 16), True),
    ("pool2", pool("AVE", 3, 2), (32, 16, 16), True),
    ("conv3", conv(64, CIFAR_FILLERS, pad=2), (32, 8, 8), True),
    ("pool3", pool("AVE", 3, 2), (64, 8, 8), True),
    ("ip1", ip(64, CIFAR_FILLERS), (64, 4, 4), True),
    ("ip2", ip(10, CIFAR_FILLERS), (64,), True),
]
NETS = {"lenet": (LENET, 64), "cifar10_quick": (CIFAR10_QUICK, 100)}


def build(name, type_name, settings, shape, batch):
    param = text_format.Parse(f'name: "{name}" type: "{type_name}" {settings}',
                              pb.LayerParameter())
    layer = create_layer(param, TRAIN, np.float32)
    bottom, top = [Blob((batch,) + shape, np.float32)], [Blob((), np.float32)]
    bottom[0].data[...] = np.random.default_rng(0).normal(size=bottom[0].shape)
    layer.setup(bottom, top)
    top[0].diff[...] = np.random.default_rng(1).normal(size=top[0].shape)
    return layer, bottom, top


def median_ms(repeat, clock, fn, *args, **kwargs):
    fn(*args, **kwargs)
    times = []
    for _ in range(repeat):
        start = clock()
        fn(*args, **kwargs)
        times.append(clock() - start)
    return 1000 * float(np.median(times))


class _RecordingNumpy:
    """Stands in for numpy in a layer's module: records every matmul call, then makes it."""

    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, *args, **kwargs):
        self.calls.append((np.matmul, args, kwargs))
        return np.matmul(*args, **kwargs)


# The products a layer's module may call besides numpy.matmul (confnet/host_blas.py).
PRODUCTS = ("matmul_batches", "matmul_reduce")


def products_ms(layer, bottom, top, propagate, repeat, clock):
    """The summed median ms of the matrix products one forward and backward of ``layer``
    make (numpy.matmul and host_blas's shared-out products), each replayed alone on its
    recorded operands."""
    module = sys.modules[type(layer).__module__]
    calls = []

    def recording(fn):
        def record(*args, **kwargs):
            calls.append((fn, args, kwargs))
            return fn(*args, **kwargs)
        return record
    saved = {name: getattr(module, name) for name in ("np", *PRODUCTS) if hasattr(module, name)}
    module.np = _RecordingNumpy(calls)
    for name in PRODUCTS:
        if name in saved:
            setattr(module, name, recording(saved[name]))
    try:
        layer.forward(bottom, top)
        layer.backward(top, [propagate], bottom)
    finally:
        for name, value in saved.items():
            setattr(module, name, value)
    return sum(median_ms(repeat, clock, fn, *args, **kwargs) for fn, args, kwargs in calls)


def torch_ms(torch, layer, bottom, top, propagate, repeat, clock):
    """(forward ms, backward ms) of PyTorch's version of ``layer``, on the same data."""
    functional = torch.nn.functional
    x = torch.from_numpy(bottom[0].data.copy()).requires_grad_(propagate)
    dy = torch.from_numpy(top[0].diff.copy())
    params = [torch.from_numpy(b.data.copy()).requires_grad_(True) for b in layer.blobs]
    if layer.type == "Convolution":
        def forward():
            return functional.conv2d(x, *params, stride=layer.stride, padding=layer.pad)
    elif layer.type == "InnerProduct":
        def forward():
            return functional.linear(x.flatten(1), *params)
    else:   # Pooling; Caffe rounds the pooled size up
        pool = functional.max_pool2d if layer.method == 0 else functional.avg_pool2d

        def forward():
            return pool(x, layer.kernel, layer.stride, layer.pad, ceil_mode=True)
    f = median_ms(repeat, clock, forward)
    times = []
    for _ in range(repeat + 1):
        y = forward()
        start = clock()
        y.backward(dy.reshape(y.shape))
        times.append(clock() - start)
    return f, 1000 * float(np.median(times[1:]))


def floor(layer, bottom, top, propagate):
    """(MFLOP, MB) of one forward + backward: the arithmetic (a multiply-add is 2) and the
    bytes of bottom, top, their gradients and the parameters, each moved once."""
    x, y = bottom[0], top[0]
    params = sum(b.count for b in layer.blobs)
    moved = 2 * (x.count + y.count) + 3 * params
    if layer.type in ("Convolution", "InnerProduct"):
        inputs = layer.blobs[0].count // layer.blobs[0].shape[0]   # per output (C/G K, or K)
        flop = 2 * y.count * inputs * (2 + propagate)
    else:   # pooling: every window cell looked at once forward and once backward
        flop = 2 * y.count * int(np.prod(layer.kernel))
    return flop / 1e6, 4 * moved / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=sorted(NETS), default="lenet")
    parser.add_argument("--batch", type=int, help="default: 64 for LeNet, 100 for CIFAR")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--threads", help="confnet's threads, a number or auto (the default)")
    parser.add_argument("--only", help="time this layer only")
    parser.add_argument("--products", action="store_true",
                        help="also time each layer's matrix products alone")
    parser.add_argument("--torch", action="store_true",
                        help="also time PyTorch's version of each layer")
    args = parser.parse_args()
    torch = None
    if args.torch:
        import torch
    layers, batch = NETS[args.net]
    batch = args.batch or batch
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    count = threads.configure(args.threads)
    print(f"{args.net}, batch {batch}, {args.clock} ms, median of {args.repeat}, "
          f"{count} thread(s)")
    extra = f" {'products ms':>11}" if args.products else ""
    extra += f" {'PyTorch ms':>10} {'ratio':>6}" if torch else ""
    print(f"{'layer':8} {'forward ms':>11} {'backward ms':>12} {'total ms':>9} {'MFLOP':>8} "
          f"{'MB':>6} {'GFLOP/s':>8}{extra}")
    total_f = total_b = flops = total_products = total_torch = 0.0
    for name, (type_name, settings), shape, propagate in layers:
        if args.only and name != args.only:
            continue
        layer, bottom, top = build(name, type_name, settings, shape, batch)
        f = median_ms(args.repeat, clock, layer.forward, bottom, top)
        b = median_ms(args.repeat, clock, layer.backward, top, [propagate], bottom)
        mflop, mb = floor(layer, bottom, top, propagate)
        total_f, total_b, flops = total_f + f, total_b + b, flops + mflop
        extra = ""
        if args.products:
            products = products_ms(layer, bottom, top, propagate, args.repeat, clock)
            total_products += products
            extra += f" {products:11.2f}"
        if torch:
            theirs = sum(torch_ms(torch, layer, bottom, top, propagate, args.repeat, clock))
            total_torch += theirs
            extra += f" {theirs:10.2f} {(f + b) / theirs:6.2f}"
        print(f"{name:8} {f:11.2f} {b:12.2f} {f + b:9.2f} {mflop:8.0f} {mb:6.1f} "
              f"{mflop / (f + b):8.1f}{extra}")
    extra = f" {total_products:11.2f}" if args.products else ""
    extra += f" {total_torch:10.2f} {(total_f + total_b) / total_torch:6.2f}" if torch else ""
    print(f"{'all':8} {total_f:11.2f} {total_b:12.2f} {total_f + total_b:9.2f} {flops:8.0f} "
          f"{'':6} {flops / (total_f + total_b):8.1f}{extra}")


if __name__ == "__main__":
    main()
