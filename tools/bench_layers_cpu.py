"""Time forward and backward of LeNet's heavy layers on the CPU (float32), one row per layer.

    python tools/bench_layers_cpu.py [--batch 64] [--repeat 50]

Shapes are those of models/lenet (batch 64 by default): conv1 1->20 5x5 on 28x28, pool1 2x2/2,
conv2 20->50 5x5 on 12x12, pool2 2x2/2, ip1 800->500, ip2 500->10. conv1 does not back-propagate
to its input (the data), as in a LeNet training step. Threads: whatever numpy's BLAS uses (set
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS to pin it). Times are medians.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from google.protobuf import text_format

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from confnet.blob import Blob
from confnet.layers import TRAIN, create_layer
from confnet.proto import confnet_pb2 as pb

FILLERS = 'weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 }'
LENET = [
    ("conv1", "convolution_param { num_output: 20 kernel_size: 5 " + FILLERS + " }",
     "Convolution", (1, 28, 28), False),
    ("pool1", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", "Pooling", (20, 24, 24),
     True),
    ("conv2", "convolution_param { num_output: 50 kernel_size: 5 " + FILLERS + " }",
     "Convolution", (20, 12, 12), True),
    ("pool2", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", "Pooling", (50, 8, 8),
     True),
    ("ip1", "inner_product_param { num_output: 500 " + FILLERS + " }", "InnerProduct",
     (50, 4, 4), True),
    ("ip2", "inner_product_param { num_output: 10 " + FILLERS + " }", "InnerProduct", (500,),
     True),
]


def build(name, settings, type_name, shape, batch):
    param = text_format.Parse(f'name: "{name}" type: "{type_name}" {settings}',
                              pb.LayerParameter())
    layer = create_layer(param, TRAIN, np.float32)
    bottom, top = [Blob((batch,) + shape, np.float32)], [Blob((), np.float32)]
    bottom[0].data[...] = np.random.default_rng(0).normal(size=bottom[0].shape)
    layer.setup(bottom, top)
    top[0].diff[...] = np.random.default_rng(1).normal(size=top[0].shape)
    return layer, bottom, top


def median_ms(repeat, fn, *args):
    fn(*args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(f"{'layer':8} {'forward ms':>11} {'backward ms':>12} {'total ms':>9}")
    total_f = total_b = 0.0
    for name, settings, type_name, shape, propagate in LENET:
        layer, bottom, top = build(name, settings, type_name, shape, args.batch)
        f = median_ms(args.repeat, layer.forward, bottom, top)
        b = median_ms(args.repeat, layer.backward, top, [propagate], bottom)
        total_f, total_b = total_f + f, total_b + b
        print(f"{name:8} {f:11.2f} {b:12.2f} {f + b:9.2f}")
    print(f"{'all':8} {total_f:11.2f} {total_b:12.2f} {total_f + total_b:9.2f}")


if __name__ == "__main__":
    main()
