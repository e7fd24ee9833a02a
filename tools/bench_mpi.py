"""Data-parallel scaling: LeNet training images/s with 1 and 2 ranks, and the efficiency.

    python tools/bench_mpi.py [--ranks 1,2] [--batch 64] [--display 20] [--records 4096]

Each count of ranks runs ``mpirun -n N confnet train`` (the mpirun of the ``mpi`` extra) on
models/lenet/train_val.prototxt reading a synthetic 28x28 LMDB made in a temporary folder;
every rank uses one BLAS thread. Each rank keeps the batch ``--batch`` (weak scaling: N ranks
train with batch N x batch), so ideal scaling is N times the images/s of one rank:

    efficiency(N) = images/s(N) / (N * images/s(1))

images/s is what rank 0 logs for the iterations display..2*display (so start-up and the first
iterations are not counted; the run lasts 3 * display iterations). On a machine with fewer
free cores than ranks, or shared with other work, the efficiency says as much about the load
as about confnet: report the machine and its load with the figure.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from confnet.data.datum import array_to_datum, datum_key
from confnet.data.lmdb_io import LMDBWriter
from confnet.proto import io

SPEED = re.compile(r"Iteration (\d+) \(([\d.]+) iter/s, (\d+) images/s\)")


def write_lmdb(path, records):
    g = np.random.default_rng(0)
    with LMDBWriter(str(path)) as db:
        for i in range(records):
            image = g.integers(0, 256, (1, 28, 28), dtype=np.uint8)
            db.put(datum_key(i, f"{i}.png"), array_to_datum(image, i % 10).SerializeToString())


def write_solver(folder, source, batch, display):
    net = io.read_net(str(ROOT / "models" / "lenet" / "train_val.prototxt"))
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = str(source)
            layer.data_param.batch_size = batch
    param = io.read_solver(str(ROOT / "models" / "lenet" / "solver.prototxt"))
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    del param.test_iter[:]
    param.test_interval = 0
    param.max_iter, param.display, param.snapshot = 3 * display, display, 0
    param.snapshot_prefix = str(folder / "bench")
    param.random_seed = 1
    path = folder / "solver.prototxt"
    io.write_text(param, str(path))
    return path


def images_per_second(mpirun, ranks, solver, display):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    confnet = str(Path(sys.executable).parent / "confnet")
    run = subprocess.run([mpirun, "-n", str(ranks), confnet, "train", "--solver", str(solver)],
                         capture_output=True, text=True, env=env, check=False)
    if run.returncode != 0:
        sys.exit(f"mpirun -n {ranks} failed:\n{run.stderr[-2000:]}")
    speeds = {int(m[0]): (float(m[1]), float(m[2])) for m in SPEED.findall(run.stderr)}
    return speeds[2 * display]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts")
    parser.add_argument("--batch", type=int, default=64, help="batch per rank")
    parser.add_argument("--display", type=int, default=20, help="iterations per timed interval")
    parser.add_argument("--records", type=int, default=4096)
    args = parser.parse_args()
    mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or \
        shutil.which("mpirun")
    if mpirun is None:
        sys.exit("no mpirun: pip install 'confnet[mpi]'")
    ranks = [int(n) for n in args.ranks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_lmdb(folder / "lmdb", args.records)
        solver = write_solver(folder, folder / "lmdb", args.batch, args.display)
        results = {n: images_per_second(mpirun, n, solver, args.display) for n in ranks}
    base = results[ranks[0]][1] / ranks[0]
    print(f"LeNet, batch {args.batch} per rank, 1 thread per rank, {os.cpu_count()} CPUs, "
          f"iterations {args.display}..{2 * args.display}")
    print(f"{'ranks':>5}  {'global batch':>12}  {'iter/s':>7}  {'images/s':>9}  {'efficiency':>10}")
    for n in ranks:
        speed, images = results[n]
        print(f"{n:>5}  {n * args.batch:>12}  {speed:>7.2f}  {images:>9.0f}  "
              f"{images / (n * base):>10.0%}")


if __name__ == "__main__":
    main()
