"""The ``confnet`` command line.

Every user mistake ends as one line on stderr and a non-zero exit code; ``--debug`` shows the
Python traceback as well.
"""

import contextlib
import logging
import sys

import click

from . import log as logsetup
from .errors import ConfnetError

log = logging.getLogger("confnet")


_GLOBAL_FLAGS = ("--debug", "--quiet", "-q", "--allow-python-layers")
_GLOBAL_VALUED = ("--threads",)


def _move_valued(args):
    """The group's options that take a value (``--threads N`` or ``--threads=N``), moved to the
    front wherever they stand before a ``--``."""
    moved, rest, i = [], [], 0
    while i < len(args) and args[i] != "--":
        name = args[i].split("=", 1)[0]
        take = 0 if name not in _GLOBAL_VALUED else 1 if "=" in args[i] else 2
        (moved if take else rest).extend(args[i:i + max(take, 1)])
        i += max(take, 1)
    return moved + rest + args[i:]


class _Group(click.Group):
    """Turns a ConfnetError (or an OSError, or a usage mistake) from any command into one line
    and a non-zero exit code; a Ctrl-C that stops at once into one line and exit code 130.
    The group's flags (--debug, -q, ...) are accepted after the command too."""

    def parse_args(self, ctx, args):
        end = args.index("--") if "--" in args else len(args)
        moved = [a for a in args[:end] if a in _GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in _GLOBAL_FLAGS] + args[end:]
        return super().parse_args(ctx, moved + _move_valued(rest))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfnetError as error:
            if ctx.params.get("debug"):
                raise
            click.echo(f"confnet: error: {error}", err=True)
            sys.exit(1)
        except click.UsageError as error:
            if ctx.params.get("debug") or type(error).__name__ == "NoArgsIsHelpError":
                raise
            where = error.ctx.command_path if error.ctx else ctx.command_path
            message = error.format_message().rstrip(".")
            click.echo(f"confnet: error: {message}; see '{where} --help'", err=True)
            sys.exit(error.exit_code)
        except OSError as error:
            if ctx.params.get("debug"):
                raise
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"confnet: error: {where}{error.strerror or error}; check the path and "
                       "its permissions", err=True)
            sys.exit(1)
        except MemoryError:
            if ctx.params.get("debug"):
                raise
            click.echo(f"confnet: error: out of memory while running 'confnet "
                       f"{ctx.invoked_subcommand}'; make the batch, the net or the data smaller",
                       err=True)
            sys.exit(1)
        except KeyboardInterrupt as interrupt:
            if ctx.params.get("debug"):
                raise
            from .signals import Terminated
            what = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
            click.echo(f"confnet: {what}: stopped at once, nothing more written", err=True)
            sys.exit(143 if isinstance(interrupt, Terminated) else 130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks and debug log lines.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
@click.option("--allow-python-layers", is_flag=True, help="Let nets load the user code their "
              "Python layers name (off by default: a downloaded prototxt must not run code).")
@click.option("--threads", metavar="N|auto", help="Threads for numpy's BLAS and confnet's workers "
              "(default: $CONFNET_THREADS, else auto: the cores idle at start; see the README).")
@click.version_option(package_name="confnet")
def main(debug, quiet, allow_python_layers, threads):
    """Train Caffe-format networks: prototxt definitions, LMDB data, .caffemodel weights.

    \b
    Example:
      confnet convert-data data/mnist/train data/mnist_train_lmdb --gray --shuffle
      confnet train --solver models/lenet/solver.prototxt
    """
    logsetup.setup(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    from .layers.python_layer import allow_python_layers as allow
    allow(allow_python_layers)
    from . import threads as thread_count
    thread_count.request(threads)


_GPU_HELP = ("Run on this GPU (an id, as in nvidia-smi) or on 'emu', the CUDA-on-CPU "
             "emulator (slow; for developing kernels without a GPU).")


def _use_device(gpu_option, solver_param=None):
    """Select where the net runs: ``--gpu`` if given (an unusable GPU is an error), else a
    solver's ``solver_mode: GPU`` with its ``device_id`` (an unusable GPU is a warning and the
    CPU), else the CPU."""
    from . import gpu, threads
    from .proto import confnet_pb2 as pb
    threads.configure()
    if gpu_option is not None:
        if gpu_option.strip().lower() == "all":
            raise ConfnetError("--gpu all: one process drives one GPU; to train on several, "
                               "start one process per GPU with mpirun (see the README)")
        backend = gpu.use(gpu_option)
        log.info("Using %s", backend.describe())
        return
    wants_gpu = (solver_param is not None and solver_param.HasField("solver_mode")
                 and solver_param.solver_mode == pb.SolverParameter.GPU)
    if not wants_gpu:
        gpu.use(None)
        return
    try:
        backend = gpu.use(solver_param.device_id)
    except ConfnetError as error:
        log.warning("solver_mode is GPU, but %s; running on the CPU", str(error).rstrip("."))
        gpu.use(None)
        return
    log.info("Using %s (solver_mode: GPU)", backend.describe())


def _tf32_option(command):
    return click.option("--no-tf32", "no_tf32", is_flag=True,
                        help="Keep every matrix product on the GPU in float32 (overrides the "
                        "solver's allow_tf32, which lets large ones use TF32 tensor cores).")(
                            command)


def _signal_options(command):
    """Caffe's --sigint_effect / --sighup_effect (either spelling)."""
    effects = click.Choice(["stop", "snapshot", "none"])
    command = click.option(
        "--sigterm-effect", "--sigterm_effect", "sigterm_effect", type=effects, default="stop",
        show_default=True, help="What SIGTERM (kill, job schedulers) does: as for "
        "--sigint-effect.")(command)
    command = click.option(
        "--sighup-effect", "--sighup_effect", "sighup_effect", type=effects, default="snapshot",
        show_default=True, help="What SIGHUP does: snapshot and go on, stop (after a snapshot), "
        "or nothing.")(command)
    return click.option(
        "--sigint-effect", "--sigint_effect", "sigint_effect", type=effects, default="stop",
        show_default=True, help="What Ctrl-C (SIGINT) does: stop after the current iteration, "
        "with a snapshot; snapshot and go on; or nothing. A second Ctrl-C aborts at once.")(
        command)


def _state_options(command):
    """NetState level and stages that select layers by their include/exclude rules."""
    command = click.option("--stage", "stages", multiple=True, help="A NetState stage "
                           "(repeat for several).")(command)
    return click.option("--level", default=0, show_default=True, help="The NetState level.")(
        command)


def _tensorboard_option(command):
    return click.option("--tensorboard", metavar="DIR", help="Also write the metrics (loss, lr, "
                        "images/s, test outputs) as TensorBoard event files into DIR; view them "
                        "with tensorboard --logdir DIR (pip install 'confnet[tensorboard]').")(
        command)


def _graph_option(command):
    return click.option("--no-graph", "no_graph", is_flag=True, help="On a GPU, run every "
                        "iteration eagerly instead of replaying it as a CUDA graph (overrides "
                        "the solver's cuda_graph).")(command)


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
@click.option("--gpu", help=_GPU_HELP)
@_tensorboard_option
@_tf32_option
@_signal_options
@_state_options
@_graph_option
def train(solver_path, weights, snapshot, seed, gpu, tensorboard, no_tf32, sigint_effect,
          sighup_effect, sigterm_effect, level, stages, no_graph):
    """Train the net a solver describes.

    \b
    Example:
      confnet train --solver models/lenet/solver.prototxt
      confnet train --solver models/lenet/solver.prototxt \\
          --snapshot examples/lenet/lenet_iter_1000.solverstate
      confnet train --solver models/lenet/solver.prototxt --tensorboard runs/lenet
    """
    if weights and snapshot:
        raise ConfnetError("give --weights or --snapshot, not both")
    _run_training(solver_path, weights, snapshot, seed, gpu, sigint_effect, sighup_effect,
                  level, stages, sigterm_effect, tensorboard, no_tf32, graph=not no_graph)


@main.command()
@click.option("--solver", "solver_path", required=True, type=click.Path(dir_okay=False),
              help="The solver definition.")
@click.option("--weights", required=True, help="Pretrained .caffemodel (comma-separated list "
              "allowed); layers are matched by name, renamed layers start from their fillers.")
@click.option("--seed", type=int, help="Random seed (overrides the solver's random_seed).")
@click.option("--gpu", help=_GPU_HELP)
@_tensorboard_option
@_tf32_option
@_signal_options
@_state_options
@_graph_option
def finetune(solver_path, weights, seed, gpu, tensorboard, no_tf32, sigint_effect,
             sighup_effect, sigterm_effect, level, stages, no_graph):
    """Train starting from pretrained weights.

    \b
    Example:
      confnet finetune --solver solver.prototxt --weights pretrained.caffemodel
    """
    _run_training(solver_path, weights, None, seed, gpu, sigint_effect, sighup_effect, level,
                  stages, sigterm_effect, tensorboard, no_tf32, graph=not no_graph)


def _run_training(solver_path, weights, snapshot, seed, gpu, sigint_effect="stop",
                  sighup_effect="snapshot", level=0, stages=(), sigterm_effect="stop",
                  tensorboard=None, no_tf32=False, graph=True):
    """Build the solver and train; Ctrl-C, SIGTERM and SIGHUP act as the effects say; a live
    progress line on a terminal; TensorBoard scalars into ``tensorboard``. Started by
    mpirun/srun with several ranks, data-parallel (see confnet/parallel). ``graph=False``
    (--no-graph) turns the solver's cuda_graph off."""
    import numpy as np

    from .parallel import current_job
    from .signals import handle_signals
    job = current_job()
    with job.guard():
        solver = job.agree(lambda: _build_solver(job, solver_path, weights, seed, gpu, level,
                                                 stages, no_tf32, graph))
        if tensorboard and job.rank == 0:
            from .metrics import TensorBoardWriter
            solver.tensorboard = TensorBoardWriter(tensorboard)
            log.info("Writing TensorBoard logs to %s", tensorboard)
        progress = _progress_line(solver)
        try:
            # A nan or inf loss stops training with its own message: no numpy warnings first.
            with handle_signals(solver, sigint_effect, sighup_effect, sigterm_effect), \
                    np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    _solver_file_named(solver_path):
                solver.solve(snapshot)
        finally:
            if progress:
                progress.close()
            if solver.tensorboard:
                solver.tensorboard.close()
        if job.rank == 0:
            _say_where_weights_are(solver)


def _build_solver(job, solver_path, weights, seed, gpu, level, stages, no_tf32=False,
                  graph=True):
    """The solver the command line describes (of this rank, in a data-parallel job), with the
    --weights copied in."""
    from .proto import io
    from .solver import solver_class
    param = io.read_solver(solver_path)
    _use_device(gpu, param)
    if seed is not None:
        param.random_seed = seed
    if no_tf32:
        param.allow_tf32 = False
    if not graph:
        param.cuda_graph = False
    if level:
        param.train_state.level = level
    param.train_state.stage.extend(stages)
    with _solver_file_named(solver_path):
        solver = job.solver_class(solver_class(param.type))(param, solver_path)
    for path in filter(None, (weights or "").split(",")):
        log.info("Finetuning from %s", path)
        solver.net.copy_from(path)
    return solver


def _say_where_weights_are(solver):
    """The last line of a training run: the file holding the final weights, or why none does."""
    saved = solver.last_snapshot
    if saved and saved[0] == solver.iter:
        click.echo(f"Final weights (iteration {solver.iter}): {saved[1]}")
    elif saved:
        click.echo(f"The final weights (iteration {solver.iter}) are not saved "
                   f"(snapshot_after_train: false); the newest are {saved[1]} (iteration "
                   f"{saved[0]})")
    else:
        click.echo(f"The final weights (iteration {solver.iter}) are not saved: the solver "
                   "has no snapshot_prefix")


@contextlib.contextmanager
def _solver_file_named(path):
    """Solver settings errors say "solver: ..."; name the user's solver file instead."""
    try:
        yield
    except ConfnetError as error:
        text = str(error)
        if text.startswith("solver: "):
            raise ConfnetError(f"{path}: {text[len('solver: '):]}") from None
        raise


def _progress_line(solver):
    """A live progress line when stderr is a terminal and the log is not --quiet."""
    if not sys.stderr.isatty() or not log.isEnabledFor(logging.INFO):
        return None
    from .progress import ProgressLine
    return ProgressLine(sys.stderr).attach(solver)


@main.command()
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="The net definition (train_val.prototxt or deploy.prototxt).")
@click.option("--weights", required=True, help="The trained .caffemodel.")
@click.option("--iterations", default=50, show_default=True, help="Batches to score.")
@click.option("--phase", type=click.Choice(["TRAIN", "TEST"]), default="TEST", show_default=True)
@click.option("--gpu", help=_GPU_HELP)
@_state_options
def test(model, weights, iterations, phase, gpu, level, stages):
    """Score a trained model: average each output over --iterations batches.

    \b
    Example:
      confnet test --model models/lenet/train_val.prototxt \\
          --weights examples/lenet/lenet_iter_3000.caffemodel --iterations 10
    """
    import numpy as np

    from .layers import TEST, TRAIN
    from .net import Net
    _use_device(gpu)
    net = Net(model, TEST if phase == "TEST" else TRAIN, level, stages, weights=weights,
              share_blobs=phase == "TEST")
    sums, loss = {}, 0.0
    for i in range(iterations):
        loss += net.forward_loss()
        for name in net.outputs:
            values = net.blobs[name].cpu_data.astype(np.float64)
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
@click.option("--workers", default=0, help="Decoding processes (0: as many as --threads).")
@click.option("--seed", default=0, show_default=True, help="Seed of --shuffle.")
@click.option("--fail-on-bad", is_flag=True, help="Stop at the first unreadable image "
              "instead of reporting and skipping it.")
def convert_data(src, db, root, resize_height, resize_width, gray, shuffle, encoded,
                 encode_type, check_size, workers, seed, fail_on_bad):
    """Convert images into an LMDB of Caffe Datum records.

    SRC is a folder with one subfolder per class (labels by sorted folder name, written to
    DB/labels.txt, inside the database) or a Caffe list file of "path label" lines.

    \b
    Example:
      confnet convert-data data/mnist/train data/mnist_train_lmdb --gray --shuffle
      confnet convert-data train.txt train_lmdb --root images/ --resize-height 256 \\
          --resize-width 256 --encoded
    """
    from .data.convert import convert_imageset
    from .signals import terminate_interrupts
    from .threads import count as thread_count
    with terminate_interrupts():
        result = convert_imageset(
            src, db, root=root, resize_height=resize_height, resize_width=resize_width,
            gray=gray, shuffle=shuffle, encoded=encoded, encode_type=encode_type,
            check_size=check_size, workers=workers or thread_count(), seed=seed,
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


@main.command("upgrade-net")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
def upgrade_net_command(old, new):
    """Rewrite a net from Caffe's old V0 / V1 (`layers { type: CONVOLUTION }`) format in the
    current one. A prototxt comes out as a prototxt, a binary .caffemodel as a .caffemodel
    with its weights.

    \b
    Example:
      confnet upgrade-net old/deploy.prototxt deploy.prototxt
      confnet upgrade-net old/bvlc_alexnet.caffemodel bvlc_alexnet.caffemodel
    """
    from .proto.io import upgrade_net_file
    binary, changed = upgrade_net_file(old, new)
    what = "upgraded" if changed else "already in the current format, copied"
    click.echo(f"{new}: {what} ({'binary' if binary else 'text'})")


@main.command("upgrade-solver")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
def upgrade_solver_command(old, new):
    """Rewrite a solver prototxt in the current format (`solver_type: NESTEROV` becomes
    `type: "Nesterov"`; nets given inline are upgraded too).

    \b
    Example:
      confnet upgrade-solver old/solver.prototxt solver.prototxt
    """
    from .proto.io import upgrade_solver_file
    changed = upgrade_solver_file(old, new)
    click.echo(f"{new}: {'upgraded' if changed else 'already in the current format, copied'}")


@main.command("device-query")
@click.option("--gpu", default="0", show_default=True, help="A GPU id, 'all', or 'emu'.")
def device_query(gpu):
    """Show the GPU confnet would use (name, architecture, SMs, memory), as Caffe's
    device_query.

    \b
    Example:
      confnet device-query --gpu 0
      confnet device-query --gpu emu
    """
    from . import gpu as devices
    if gpu.strip().lower() != "all":
        click.echo(devices.get(gpu).describe())
        return
    from .gpu.pycuda_backend import PyCudaBackend, _import_driver
    drv = _import_driver()
    drv.init()
    for i in range(drv.Device.count()):
        click.echo(PyCudaBackend(i).describe())


@main.command("time")
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="The net definition (train_val.prototxt or deploy.prototxt).")
@click.option("--iterations", default=50, show_default=True, type=click.IntRange(min=1),
              help="Timed forward+backward passes (after one warm-up pass).")
@click.option("--phase", type=click.Choice(["TRAIN", "TEST"]), default="TRAIN",
              show_default=True)
@click.option("--mean", "use_mean", is_flag=True, help="Report the mean time instead of the "
              "median.")
@click.option("--gpu", help=_GPU_HELP)
@_state_options
def time_command(model, iterations, phase, use_mean, gpu, level, stages):
    """Time each layer's forward and backward pass.

    Prints one row per layer (forward and backward ms, share of the total, top shape, memory of
    tops and parameters), the totals per iteration and the memory: blob data and parameters,
    the process's peak resident memory and, on a device, the allocator's peak and held bytes.
    Input layers get random values (class indices for blobs named like "label"); Data layers
    read their database. --phase TEST times the inference net: forward only, its blobs sharing
    memory by lifetime as when it scores a model.

    \b
    Example:
      confnet time --model models/lenet/train_val.prototxt --iterations 20
      confnet time --model models/lenet/deploy.prototxt --phase TEST
    """
    from . import timing
    from .layers import TEST, TRAIN
    from .net import Net
    from .proto.io import read_net
    _use_device(gpu)
    param = read_net(model)
    train = phase == "TRAIN"
    param.force_backward = train    # time every layer's backward, as Caffe's tool does
    net = Net(param, TRAIN if train else TEST, level, stages, share_blobs=not train)
    if not net.layers:
        raise ConfnetError(f"{model}: the net has no layers in phase {phase}; nothing to time")
    log.info("Timing %d %s iterations of %s", iterations,
             "forward+backward" if train else "forward", net.name)
    import shutil
    result = timing.time_net(net, iterations, progress=_passes_shown(iterations),
                             backward=train)
    for line in timing.table(result, use_mean, shutil.get_terminal_size((80, 24)).columns):
        click.echo(line)


def _passes_shown(iterations):
    """A progress callback for `confnet time`: a live count on a terminal, else a log line at
    every tenth of the passes."""
    tty = sys.stderr.isatty()

    def show(done, total):
        if tty:
            end = "\n" if done == total else ""
            click.echo(f"\rtiming: pass {done}/{total} (pass 0 is the warm-up)", err=True,
                       nl=False)
            click.echo(end, err=True, nl=False)
        elif done and done % max(total // 10, 1) == 0:
            log.info("Timed %d of %d passes", done, total)
    return show


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--phase", type=click.Choice(["TRAIN", "TEST", "ALL"]), default="ALL",
              show_default=True, help="Draw the layers of this phase (ALL: every layer).")
@click.option("--rankdir", type=click.Choice(["LR", "TB", "RL", "BT"]), default="LR",
              show_default=True, help="Direction of the flow: left to right, top to bottom...")
@click.option("--no-shapes", is_flag=True, help="Do not build the net to label blob shapes.")
def draw(model, out, phase, rankdir, no_shapes):
    """Draw a net as a diagram: OUT.png, OUT.svg (these need Graphviz's dot) or OUT.dot.

    \b
    Example:
      confnet draw models/lenet/train_val.prototxt lenet.png
      confnet draw models/lenet/train_val.prototxt lenet.svg --phase TEST --rankdir TB
    """
    from .draw import draw as draw_net
    draw_net(model, out, phase, rankdir, with_shapes=not no_shapes)
    click.echo(f"{out}: diagram of {model} ({phase})")


@main.command()
@click.argument("csv_path", metavar="LOG.csv", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--title", help="Title of the figure (default: the CSV's file name).")
def plot(csv_path, out, title):
    """Plot the loss and accuracy curves of a metrics CSV into OUT (.png, .svg or .pdf).

    Training writes the CSV as <snapshot_prefix>_log.csv; `confnet parse-log` makes one from a
    Caffe log. Needs matplotlib (pip install confnet[plot]).

    \b
    Example:
      confnet plot examples/lenet/lenet_log.csv lenet_curves.png
    """
    from .plot import plot_metrics
    plot_metrics(csv_path, out, title)
    click.echo(f"{out}: curves of {csv_path}")


@main.command("parse-log")
@click.argument("log_path", metavar="LOG", type=click.Path(dir_okay=False))
@click.argument("out", metavar="OUT.csv", type=click.Path(dir_okay=False))
def parse_log_command(log_path, out):
    """Turn a training log written by Caffe or confnet into a metrics CSV.

    Reads the "Iteration N, loss = x", "Iteration N, lr = y", "Testing net (#k)" and "Test net
    output #j: name = v" lines; `confnet plot` draws the CSV.

    \b
    Example:
      caffe train --solver solver.prototxt 2> caffe.log
      confnet parse-log caffe.log caffe_log.csv
      confnet plot caffe_log.csv caffe_curves.png
    """
    from . import metrics
    try:
        with open(log_path, encoding="utf-8", errors="replace") as stream:
            columns, rows = metrics.parse_log(stream, where=log_path)
    except FileNotFoundError:
        raise ConfnetError(f"{log_path}: no such file") from None
    metrics.write_csv(out, columns, rows)
    click.echo(f"{out}: {len(rows)} rows; columns {', '.join(columns)}")


@main.command("tensorboard")
@click.argument("log_path", metavar="LOG", type=click.Path(dir_okay=False))
@click.argument("logdir", metavar="DIR", type=click.Path(file_okay=False))
def tensorboard_command(log_path, logdir):
    """Write the metrics of a training run as TensorBoard event files into DIR.

    LOG is a metrics CSV (<snapshot_prefix>_log.csv, or one from parse-log) or a training log
    written by Caffe or confnet. Needs tensorboardX (pip install 'confnet[tensorboard]').

    \b
    Example:
      confnet tensorboard examples/lenet/lenet_log.csv runs/lenet
      confnet tensorboard caffe.log runs/caffe
      tensorboard --logdir runs
    """
    from .metrics import csv_to_tensorboard
    rows = csv_to_tensorboard(log_path, logdir)
    click.echo(f"{logdir}: {rows} rows of {log_path} as TensorBoard scalars")


@main.command("export")
@click.argument("model", metavar="NET.prototxt", type=click.Path(dir_okay=False))
@click.argument("weights", metavar="WEIGHTS.caffemodel", type=click.Path(dir_okay=False))
@click.argument("out", metavar="OUT.onnx", type=click.Path(dir_okay=False))
@click.option("--opset", default=17, show_default=True, help="ONNX opset version (13 or newer).")
@click.option("--batch", default="dynamic", show_default=True,
              help="'dynamic' (any batch size) or a fixed batch size.")
@click.option("--output", "outputs", multiple=True, metavar="BLOB",
              help="Expose this blob as an output (repeat; default: the net's outputs).")
@_state_options
def export_command(model, weights, out, opset, batch, outputs, level, stages):
    """Export a deploy net with its weights as an ONNX model (TEST phase).

    Layer and blob names are kept; Caffe's pooling rounding is expressed exactly. Needs the
    onnx package (pip install 'confnet[onnx]').

    \b
    Example:
      confnet export models/lenet/deploy.prototxt examples/lenet/lenet_iter_3000.caffemodel \\
          lenet.onnx
      confnet export deploy.prototxt weights.caffemodel net.onnx --batch 1 --opset 13
    """
    from .layers import TEST
    from .net import Net
    from .onnx_export import export, import_onnx
    import_onnx()     # before building a large net
    if batch != "dynamic" and not batch.isdigit():
        raise ConfnetError(f"--batch {batch}: give 'dynamic' or a batch size")
    net = Net(model, TEST, level, stages, weights=weights)
    graph = export(net, out, opset=opset, batch=batch if batch == "dynamic" else int(batch),
                   outputs=list(outputs) or None).graph
    click.echo(f"{out}: {len(graph.node)} ONNX nodes, {len(graph.initializer)} initializers, "
               f"opset {opset}; inputs {', '.join(i.name for i in graph.input)}, outputs "
               f"{', '.join(o.name for o in graph.output)}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="The deploy net (deploy.prototxt).")
@click.option("--weights", required=True, help="The trained .caffemodel.")
@click.option("--labels", type=click.Path(dir_okay=False), help="Class names, one a line "
              "(convert-data writes labels.txt beside the database).")
@click.option("--mean", help="Mean to subtract: a .binaryproto file (at the --resize size) or "
              "values per channel, e.g. 104,117,123.")
@click.option("--scale", default=1.0, show_default=True, help="Multiply the pixels (0-255, "
              "after the mean) by this, e.g. 0.00390625 for LeNet.")
@click.option("--resize", help="Resize images to HxW (or N for NxN) and centre-crop them to "
              "the net's input (default: resize to the input size).")
@click.option("--rgb", is_flag=True, help="Feed colour channels as RGB (default BGR, as Caffe "
              "and convert-data store them).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="Classes to show per image.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the predictions as "
              "CSV (path, class1, prob1, ...).")
def classify(images, model, weights, labels, mean, scale, resize, rgb, top_k, out):
    """Print the most probable classes of images (files, or folders searched recursively).

    \b
    Example:
      confnet classify --model models/lenet/deploy.prototxt \\
          --weights examples/lenet/lenet_iter_3000.caffemodel --resize 28 \\
          --scale 0.00390625 --labels data/labels.txt data/mnist/test/3
      confnet classify --model deploy.prototxt --weights w.caffemodel --resize 256 \\
          --mean 104,117,123 --labels synset_words.txt cat.jpg --out predictions.csv
    """
    from . import classify as classifying
    size = None
    if resize:
        parts = resize.lower().split("x")
        if not all(p.isdigit() and int(p) > 0 for p in parts) or len(parts) > 2:
            raise ConfnetError(f"--resize {resize}: give HxW or N, e.g. 256x256 or 256")
        size = (int(parts[0]), int(parts[-1]))
    names = classifying.read_labels(labels) if labels else None
    classifier = classifying.load(model, weights, mean=mean, scale=scale, resize=size, rgb=rgb)
    predictions = classifier.classify(classifying.list_images(images), top_k)
    for p in predictions:
        click.echo(f"{p.path}: " + ", ".join(
            f"{classifying.name_of(c, names)} ({prob:.4f})"
            for c, prob in zip(p.classes, p.probabilities)))
    if out:
        classifying.write_csv(out, predictions, names)
        click.echo(f"{out}: predictions of {len(predictions)} images")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), required=False)
def completion(shell):
    """Print the script that makes your shell complete confnet's commands and options.

    SHELL defaults to the one in $SHELL.

    \b
    Example:
      eval "$(confnet completion bash)"     # add this line to ~/.bashrc
      confnet completion fish > ~/.config/fish/completions/confnet.fish
    """
    import os

    from click.shell_completion import get_completion_class
    shell = shell or os.path.basename(os.environ.get("SHELL", ""))
    if shell not in ("bash", "zsh", "fish"):
        raise ConfnetError(f"cannot tell your shell ({shell or '$SHELL is not set'}); name it: "
                           "confnet completion bash|zsh|fish")
    script = get_completion_class(shell)(main, {}, "confnet", "_CONFNET_COMPLETE").source()
    click.echo(script)


if __name__ == "__main__":
    main()
