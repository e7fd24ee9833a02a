"""The ``confnet`` command line.

Every user mistake ends as one line on stderr and a non-zero exit code; ``--debug`` shows the
Python traceback as well.
"""

import logging
import sys

import click

from . import log as logsetup
from .errors import ConfnetError

log = logging.getLogger("confnet")


class _Group(click.Group):
    """Turns a ConfnetError from any command into one line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfnetError as error:
            if ctx.params.get("debug"):
                raise
            click.echo(f"confnet: error: {error}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks and debug log lines.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="confnet")
def main(debug, quiet):
    """Train Caffe-format networks: prototxt definitions, LMDB data, .caffemodel weights.

    \b
    Example:
      confnet convert-data data/mnist/train data/mnist_train_lmdb --gray --shuffle
      confnet train --solver models/lenet/solver.prototxt
    """
    logsetup.setup(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)


def _check_gpu(gpu):
    if gpu is not None:
        raise ConfnetError("--gpu: this confnet has no GPU backend yet; run without --gpu to "
                           "train on the CPU")


def _seed(seed):
    if seed is not None:
        from . import rng
        rng.seed(seed)


@main.command()
@click.option("--solver", "solver_path", required=True, type=click.Path(dir_okay=False),
              help="The solver definition (solver.prototxt).")
@click.option("--weights", help="Initialise from these .caffemodel weights, copied by layer "
              "name (comma-separated list allowed).")
@click.option("--snapshot", help="Resume from this .solverstate.")
@click.option("--seed", type=int, help="Random seed (overrides the solver's random_seed).")
@click.option("--gpu", help="GPU id (not available yet).")
def train(solver_path, weights, snapshot, seed, gpu):
    """Train the net a solver describes.

    \b
    Example:
      confnet train --solver models/lenet/solver.prototxt
      confnet train --solver models/lenet/solver.prototxt \\
          --snapshot examples/lenet_iter_500.solverstate
    """
    if weights and snapshot:
        raise ConfnetError("give --weights or --snapshot, not both")
    _run_training(solver_path, weights, snapshot, seed, gpu)


@main.command()
@click.option("--solver", "solver_path", required=True, type=click.Path(dir_okay=False),
              help="The solver definition.")
@click.option("--weights", required=True, help="Pretrained .caffemodel (comma-separated list "
              "allowed); layers are matched by name, renamed layers start from their fillers.")
@click.option("--seed", type=int, help="Random seed (overrides the solver's random_seed).")
@click.option("--gpu", help="GPU id (not available yet).")
def finetune(solver_path, weights, seed, gpu):
    """Train starting from pretrained weights.

    \b
    Example:
      confnet finetune --solver solver.prototxt --weights pretrained.caffemodel
    """
    _run_training(solver_path, weights, None, seed, gpu)


def _run_training(solver_path, weights, snapshot, seed, gpu):
    from .proto import io
    from .solver import solver_class
    _check_gpu(gpu)
    param = io.read_solver(solver_path)
    if seed is not None:
        param.random_seed = seed
    solver = solver_class(param.type)(param, solver_path)
    for path in filter(None, (weights or "").split(",")):
        log.info("Finetuning from %s", path)
        solver.net.copy_from(path)
    solver.solve(snapshot)


@main.command()
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="The net definition (train_val.prototxt or deploy.prototxt).")
@click.option("--weights", required=True, help="The trained .caffemodel.")
@click.option("--iterations", default=50, show_default=True, help="Batches to score.")
@click.option("--phase", type=click.Choice(["TRAIN", "TEST"]), default="TEST", show_default=True)
@click.option("--gpu", help="GPU id (not available yet).")
def test(model, weights, iterations, phase, gpu):
    """Score a trained model: average each output over --iterations batches.

    \b
    Example:
      confnet test --model models/lenet/train_val.prototxt \\
          --weights examples/lenet_iter_3000.caffemodel --iterations 10
    """
    import numpy as np

    from .layers import TEST, TRAIN
    from .net import Net
    _check_gpu(gpu)
    net = Net(model, TEST if phase == "TEST" else TRAIN, weights=weights)
    sums, loss = {}, 0.0
    for i in range(iterations):
        loss += net.forward()
        for name in net.outputs:
            values = net.blobs[name].data.astype(np.float64)
            sums[name] = sums.get(name, 0) + values
            log.info("Batch %d, %s = %s", i, name, " ".join(f"{v:g}" for v in values.flat))
    log.info("Loss: %g", loss / iterations)
    for name, total in sums.items():
        for value in (total / iterations).flat:
            log.info("%s = %g", name, value)
            click.echo(f"{name} = {value:g}")


@main.command("convert-data")
@click.argument("src", type=click.Path(exists=True))
@click.argument("db", type=click.Path())
@click.option("--root", help="Folder the paths of a list file are relative to "
              "(default: the list file's folder).")
@click.option("--resize-height", default=0, show_default=True, help="Resize images to this "
              "height (0: keep).")
@click.option("--resize-width", default=0, show_default=True, help="Resize images to this "
              "width (0: keep).")
@click.option("--gray", is_flag=True, help="Store images as one gray channel.")
@click.option("--shuffle", is_flag=True, help="Shuffle the order of the images.")
@click.option("--encoded", is_flag=True, help="Store encoded images (PNG/JPEG) instead of pixels.")
@click.option("--encode-type", default="", type=click.Choice(["", "png", "jpg"]),
              help="With --encoded: re-encode as png or jpg (default: keep each file's format).")
@click.option("--check-size", is_flag=True, help="Fail unless all images have the same size.")
@click.option("--workers", default=0, help="Decoding processes (0: one per core).")
@click.option("--seed", default=0, show_default=True, help="Seed of --shuffle.")
@click.option("--fail-on-bad", is_flag=True, help="Stop at the first unreadable image "
              "instead of reporting and skipping it.")
def convert_data(src, db, root, resize_height, resize_width, gray, shuffle, encoded,
                 encode_type, check_size, workers, seed, fail_on_bad):
    """Convert images into an LMDB of Caffe Datum records.

    SRC is a folder with one subfolder per class (labels by sorted folder name, written to
    labels.txt beside DB) or a Caffe list file of "path label" lines.

    \b
    Example:
      confnet convert-data data/mnist/train data/mnist_train_lmdb --gray --shuffle
      confnet convert-data train.txt train_lmdb --root images/ --resize-height 256 \\
          --resize-width 256 --encoded
    """
    from .data.convert import convert_imageset
    result = convert_imageset(
        src, db, root=root, resize_height=resize_height, resize_width=resize_width, gray=gray,
        shuffle=shuffle, encoded=encoded, encode_type=encode_type, check_size=check_size,
        workers=workers or None, seed=seed,
        on_bad_image="fail" if fail_on_bad else "skip", progress=sys.stderr.isatty())
    click.echo(f"{db}: {result}")


@main.command("compute-mean")
@click.argument("db", type=click.Path())
@click.argument("out", type=click.Path(dir_okay=False))
def compute_mean_command(db, out):
    """Write the mean image of an LMDB as a .binaryproto mean file.

    \b
    Example:
      confnet compute-mean data/mnist_train_lmdb data/mnist_mean.binaryproto
    """
    from .data.mean import compute_mean
    from .proto.io import write_binaryproto
    mean = compute_mean(db)
    write_binaryproto(mean[None], out)
    click.echo(f"{out}: mean of shape {' '.join(map(str, mean.shape))}, "
               f"average value {float(mean.mean()):g}")


if __name__ == "__main__":
    main()
