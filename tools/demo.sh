#!/usr/bin/env bash
# The README's demo: install confnet into .venv (unless a virtual environment is active), get the
# 5,000 MNIST digits, convert them into LMDBs, and train LeNet on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -d .venv ] || python3 -m venv .venv
    . .venv/bin/activate
fi
python -m pip install -q -e .

python tools/get_mnist.py --out data/mnist
for split in train test; do
    [ -d "data/mnist_${split}_lmdb" ] || \
        confnet convert-data "data/mnist/$split" "data/mnist_${split}_lmdb" --gray --shuffle
done
confnet train --solver models/lenet/solver.prototxt
