"""GEMM speed: every cuda/gemm.cu version beside torch.matmul, on the products confnet runs.

    python tools/bench_gemm.py [--gpu 0|emu] [--versions 1,2,3,4,5] [--seconds 0.2]
                               [--peak-fp32 TFLOPS] [--peak-tf32 TFLOPS]

Shapes, as C[m, n] = op(A)[m, k] @ op(B)[k, n] products (2 m n k flops each):

- square 4096: the textbook figure.
- CIFAR-10-quick at batch 100, the convolutions' forward products W[c_out, c_in k k] @
  columns[c_in k k, batch h w]: conv1 32 x 102400 x 75, conv2 32 x 25600 x 800, conv3 64 x 6400
  x 800 (skinny: 32..64 rows, many columns).
- CaffeNet at batch 256: conv1 96 x 774400 x 363, conv2 (one of its 2 groups) 128 x 186624 x
  1200, conv3 384 x 43264 x 2304; fc6, InnerProduct's x @ W^T: 256 x 4096 x 9216 (transb).

Each row: one version (or ``auto``, blas.choose_gemm's pick; TF32 versions only run with TF32
allowed) timed on device buffers, after a check of its result against torch.matmul in float32
(numpy float64 on the emulator). Columns: milliseconds per product, GFLOP/s, the percentage of
the device's FP32 and TF32 peaks, torch.matmul's GFLOP/s with TF32 off and on
(torch.backends.cuda.matmul.allow_tf32) measured in the same run, and the ratio of confnet's speed
to torch's at the same precision (float32 versions against TF32-off torch, TF32 versions against
TF32-on torch).

Peaks (dense, no sparsity), from NVIDIA's datasheets: H100 SXM and H200 SXM: FP32 67 TFLOPS,
TF32 tensor core 989 TFLOPS with 2:4 sparsity = 494 dense; A100 SXM: FP32 19.5, TF32 156. The
device's name picks them; --peak-fp32 / --peak-tf32 give them for another device.

Time = wall time of repeated launches between two device synchronizations, repeated until about
``--seconds`` have passed, after one untimed warm-up launch.

``--gpu emu`` runs the versions on the CUDA-on-CPU emulator on tiny shapes: it checks that the
script runs and that every version's result is right; its figures say nothing about speed.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name: (transa, transb, m, n, k)
SHAPES = {
    "square 4096": (False, False, 4096, 4096, 4096),
    "cifar10_quick conv1": (False, False, 32, 102400, 75),
    "cifar10_quick conv2": (False, False, 32, 25600, 800),
    "cifar10_quick conv3": (False, False, 64, 6400, 800),
    "caffenet conv1": (False, False, 96, 774400, 363),
    "caffenet conv2 (a group)": (False, False, 128, 186624, 1200),
    "caffenet conv3": (False, False, 384, 43264, 2304),
    "caffenet fc6 (x W^T)": (False, True, 256, 4096, 9216),
}
# The emulator runs every CUDA thread as a fiber: shapes a few tiles large.
EMU_SHAPES = {
    "square 130": (False, False, 130, 130, 130),
    "conv-like 32 x 300 x 75": (False, False, 32, 300, 75),
    "ip-like 20 x 70 x 90 (x W^T)": (False, True, 20, 70, 90),
}
# (FP32, TF32 dense) TFLOPS by a word of the device's name; see the docstring.
PEAKS = {"H200": (67.0, 494.0), "H100": (67.0, 494.0), "A100": (19.5, 156.0)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpu", default="0", help="a GPU id or 'emu' (default 0)")
    p.add_argument("--versions", default="1,2,3,4,5", help="comma-separated GEMM versions")
    p.add_argument("--seconds", type=float, default=0.2, help="timing per measurement")
    p.add_argument("--peak-fp32", type=float, help="the device's FP32 peak, TFLOPS")
    p.add_argument("--peak-tf32", type=float, help="the device's dense TF32 peak, TFLOPS")
    return p.parse_args()


def timed(run, sync, seconds):
    """Seconds per call of ``run``: one warm-up, then batches until ``seconds`` have passed."""
    run()
    sync()
    calls, start = 0, time.perf_counter()
    while True:
        run()
        calls += 1
        if calls & (calls - 1) == 0:   # synchronize at powers of two only: keep launches queued
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return elapsed / calls


class Operands:
    """A, B, C of one shape on the confnet device (and, when given, as torch tensors)."""

    def __init__(self, backend, shape, torch_device=None, seed=0):
        self.backend = backend
        transa, transb, m, n, k = shape
        g = np.random.default_rng(seed)
        self.a = g.standard_normal((k, m) if transa else (m, k), dtype=np.float32)
        self.b = g.standard_normal((n, k) if transb else (k, n), dtype=np.float32)
        self.ptrs = []
        for array in (self.a, self.b):
            ptr = backend.alloc(array.nbytes)
            backend.htod(ptr, array)
            self.ptrs.append(ptr)
        self.ptrs.append(backend.alloc(m * n * 4))
        self.torch = None
        if torch_device is not None:
            import torch
            ta, tb = (torch.from_numpy(x).to(torch_device) for x in (self.a, self.b))
            self.torch = (ta.T if transa else ta, tb.T if transb else tb)

    def result(self, m, n):
        out = np.empty((m, n), np.float32)
        self.backend.dtoh(out, self.ptrs[2])
        return out

    def free(self):
        for ptr in self.ptrs:
            self.backend.free(ptr)


def reference(ops, shape):
    """op(A) @ op(B): torch.matmul in float32 (TF32 off) on the device, else numpy float64."""
    transa, transb = shape[:2]
    if ops.torch is not None:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        return torch.matmul(*ops.torch).cpu().numpy().astype(np.float64)
    a = (ops.a.T if transa else ops.a).astype(np.float64)
    b = (ops.b.T if transb else ops.b).astype(np.float64)
    return a @ b


def torch_speeds(ops, seconds):
    """torch.matmul GFLOP/s-ready seconds per product with TF32 off and on (None, None without
    a CUDA torch)."""
    if ops.torch is None:
        return None, None
    import torch
    out = {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        out[tf32] = timed(lambda: torch.matmul(*ops.torch), torch.cuda.synchronize, seconds)
    torch.backends.cuda.matmul.allow_tf32 = False
    return out[False], out[True]


def torch_device_for(gpu):
    if gpu.strip().lower() == "emu":
        return None, "torch: not used on the emulator"
    try:
        import torch
    except ImportError:
        return None, "torch: not installed"
    if not torch.cuda.is_available():
        return None, "torch: no CUDA device"
    return torch.device(f"cuda:{int(gpu)}"), f"torch {torch.__version__}"


def peaks(args, describe):
    for word, (fp32, tf32) in PEAKS.items():
        if word in describe:
            fp32, tf32 = args.peak_fp32 or fp32, args.peak_tf32 or tf32
            return fp32, tf32, f"{word} datasheet"
    return args.peak_fp32, args.peak_tf32, "given" if args.peak_fp32 else "unknown device"


def fmt(value, spec):
    """``value`` formatted, or a dash as wide (a figure this run could not measure)."""
    if value is not None:
        return format(value, spec)
    return "-".rjust(int(spec.split(".")[0] or 0))


def main():
    args = parse_args()
    from confnet import gpu
    from confnet.gpu import blas
    backend = gpu.use(args.gpu)
    emulated = backend.name == "emu"
    torch_device, torch_note = torch_device_for(args.gpu)
    peak_fp32, peak_tf32, peak_note = peaks(args, backend.describe())
    versions = [int(v) for v in args.versions.split(",")]
    print(f"{backend.describe()}; {torch_note}; peaks FP32 {fmt(peak_fp32, '.1f')} / TF32 "
          f"{fmt(peak_tf32, '.0f')} TFLOPS ({peak_note})")
    if emulated:
        print("emulator: checks that every version runs and is right; the times mean nothing")
    header = (f"{'shape':<30} {'m x n x k':>22} {'ver':>5} {'ms':>9} {'GFLOP/s':>9} "
              f"{'%fp32':>6} {'%tf32':>6} {'torch32':>9} {'torchtf':>9} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    failures = 0
    best = {}   # shape name -> (GFLOP/s, label, ratio to torch) of its fastest float32 version
    for name, shape in (EMU_SHAPES if emulated else SHAPES).items():
        m, n, k = shape[2:]
        flops = 2.0 * m * n * k
        ops = Operands(backend, shape, torch_device)
        try:
            want = reference(ops, shape)
            t32, ttf = torch_speeds(ops, args.seconds)
            for version in [*versions, "auto"]:
                blas.set_tf32(version == "auto")   # auto: the pick with TF32 allowed
                picked = blas.choose_gemm(m, n, k) if version == "auto" else version
                tf32 = picked in blas.TF32_VERSIONS

                def run(version=version, ops=ops, shape=shape):
                    blas.gemm(*shape, 1.0, ops.ptrs[0], ops.ptrs[1], 0.0, ops.ptrs[2],
                              version=None if version == "auto" else version)
                run()
                backend.synchronize()
                err = np.abs(ops.result(m, n) - want).max() / max(np.abs(want).max(), 1e-30)
                ok = err <= (1e-2 if tf32 else 1e-4)
                failures += not ok
                label = f"v{picked}*" if version == "auto" else f"v{version}"
                if not ok:
                    print(f"{name:<30} {label:>5}: WRONG (max relative error {err:.2e})")
                    continue
                seconds = timed(run, backend.synchronize, args.seconds)
                gflops = flops / seconds / 1e9
                torch_s = ttf if tf32 else t32
                if not tf32 and gflops > best.get(name, (0,))[0]:
                    best[name] = (gflops, label, torch_s and torch_s / seconds)
                print(f"{name:<30} {f'{m} x {n} x {k}':>22} {label:>5} {seconds * 1e3:9.3f} "
                      f"{gflops:9.0f} {fmt(peak_fp32 and 100 * gflops / 1e3 / peak_fp32, '6.1f')} "
                      f"{fmt(peak_tf32 and 100 * gflops / 1e3 / peak_tf32, '6.1f')} "
                      f"{fmt(t32 and flops / t32 / 1e9, '9.0f')} "
                      f"{fmt(ttf and flops / ttf / 1e9, '9.0f')} "
                      f"{fmt(torch_s and torch_s / seconds, '6.2f')}")
        finally:
            blas.set_tf32(False)
            ops.free()
    print("v*: blas.choose_gemm's pick with TF32 allowed; ratio: confnet / torch at the same "
          "precision (TF32 versions against torch with allow_tf32)")
    # The key figure, last: the first (largest) shape's fastest float32 version.
    first = next(iter(EMU_SHAPES if emulated else SHAPES))
    if first in best:
        gflops, label, ratio = best[first]
        print(f"key: {first}: fastest float32 {label} {gflops:.0f} GFLOP/s, "
              f"{fmt(peak_fp32 and 100 * gflops / 1e3 / peak_fp32, '.0f')}% of FP32 peak, "
              f"torch speed / confnet {fmt(ratio, '.2f')}; {failures} wrong")
    else:
        print(f"key: {first}: no float32 version ran; {failures} wrong")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
