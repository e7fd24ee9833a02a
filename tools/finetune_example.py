"""Fine-tuning, measured: does LeNet learn the digits 5-9 faster from weights learned on 0-4?

1. Builds four LMDBs from the PNG folders of tools/get_mnist.py (data/mnist/{train,test}/<digit>):
   digits 0-4 and digits 5-9, each labelled 0-4, for training and held out.
2. Trains LeNet on 0-4 (models/lenet_finetune/lenet_0to4_solver.prototxt), as
   `confnet train` would, unless its weights are already there.
3. Trains LeNet on 5-9 twice with the same solver (models/lenet_finetune/solver.prototxt): from
   scratch, and fine-tuned from the 0-4 weights as `confnet finetune --weights` does (layers
   copied by name; the renamed classifier ip2_5to9 starts from its fillers).
4. Tests both on the 500 held-out digits 5-9 every --every iterations and prints how many
   iterations each needed to reach --target accuracy.

Run from anywhere; paths are relative to the repository root:

    python tools/get_mnist.py --out data/mnist     # once
    python tools/finetune_example.py
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join("models", "lenet_finetune")
SPLITS = {"0to4": range(5), "5to9": range(5, 10)}


def build_lmdbs(mnist, rebuild=False):
    """data/mnist_<0to4|5to9>_<train|test>_lmdb, labels = digit - first digit of the range."""
    from confnet.data.convert import convert_imageset
    for name, digits in SPLITS.items():
        for part in ("train", "test"):
            db = os.path.join("data", f"mnist_{name}_{part}_lmdb")
            if os.path.exists(db) and not rebuild:
                continue
            listing = os.path.join("data", f"mnist_{name}_{part}.txt")
            with open(listing, "w") as out:
                for label, digit in enumerate(digits):
                    folder = os.path.abspath(os.path.join(mnist, part, str(digit)))
                    out.writelines(f"{os.path.join(folder, image)} {label}\n"
                                   for image in sorted(os.listdir(folder)))
            result = convert_imageset(listing, db, gray=True, shuffle=True, progress=False,
                                      overwrite=rebuild)
            print(f"{db}: {result}")


def train_base(retrain=False):
    """The 0-4 weights: trained by the step-1 solver unless already there."""
    from confnet.proto import io
    from confnet.solver import get_solver
    path = os.path.join(MODELS, "lenet_0to4_solver.prototxt")
    param = io.read_solver(path)
    weights = f"{param.snapshot_prefix}_iter_{param.max_iter}.caffemodel"
    if os.path.exists(weights) and not retrain:
        print(f"using the 0-4 weights in {weights}")
        return weights
    started = time.perf_counter()
    solver = get_solver(path)
    solver.solve()
    accuracy = float(solver.test(0)["accuracy"])
    print(f"trained LeNet on 0-4 for {solver.iter} iterations in "
          f"{time.perf_counter() - started:.0f} s: held-out accuracy on 0-4 {accuracy:.3f}")
    return weights


def iterations_to_reach(weights, target, every, label, seed=None):
    """Train on 5-9 (from `weights` if given), test every `every` iterations; return the first
    tested iteration whose held-out accuracy is >= target (None if max_iter passes first), the
    accuracy there and the seconds it took."""
    from confnet.proto import io
    from confnet.solver import get_solver
    param = io.read_solver(os.path.join(MODELS, "solver.prototxt"))
    param.test_interval = 0          # tested here instead
    param.snapshot = 0
    param.snapshot_after_train = False
    if seed is not None:
        param.random_seed = seed
    solver = get_solver(param)
    if weights:
        solver.net.copy_from(weights)    # what `confnet finetune --weights` does
    started = time.perf_counter()
    history = [(0, float(solver.test(0)["accuracy"]))]
    while history[-1][1] < target and solver.iter < param.max_iter:
        solver.step(every)
        history.append((solver.iter, float(solver.test(0)["accuracy"])))
    seconds = time.perf_counter() - started
    curve = ", ".join(f"{it}: {acc:.3f}" for it, acc in history)
    print(f"{label:<12} held-out accuracy on 5-9 by iteration: {curve}")
    reached = history[-1][0] if history[-1][1] >= target else None
    return reached, history[-1][1], seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=os.path.join(ROOT, "data", "mnist"),
                        help="PNG folders written by tools/get_mnist.py (default: data/mnist)")
    parser.add_argument("--target", type=float, default=0.97, help="held-out accuracy to reach")
    parser.add_argument("--every", type=int, default=10, help="test every N iterations")
    parser.add_argument("--seed", type=int, help="random seed of the two 5-9 runs (default: "
                        "the solver's random_seed)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the LMDBs and retrain "
                        "the 0-4 net")
    args = parser.parse_args(argv)
    mnist = os.path.abspath(args.mnist)
    os.chdir(ROOT)
    if not os.path.isdir(os.path.join(mnist, "train", "0")):
        sys.exit(f"{mnist}: no digit folders; run: python tools/get_mnist.py --out {mnist}")
    build_lmdbs(mnist, args.rebuild)
    weights = train_base(args.rebuild)
    runs = [("from scratch", None), ("fine-tuned", weights)]
    results = [iterations_to_reach(w, args.target, args.every, label, args.seed)
               for label, w in runs]
    print(f"\niterations to reach {args.target:.0%} held-out accuracy on the digits 5-9 "
          f"(tested every {args.every}):")
    for (label, _), (reached, accuracy, seconds) in zip(runs, results):
        print(f"  {label:<12} {reached if reached is not None else 'not reached':>11}   "
              f"(accuracy {accuracy:.3f}, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
