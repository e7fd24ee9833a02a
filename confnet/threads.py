"""How many threads confnet computes with: numpy's BLAS pool and confnet's own workers.

The count comes from ``confnet --threads N`` or, when that is not given, from the environment
variable CONFNET_THREADS; 0 or "auto" (the default) means: the cores that are idle now.

Why not simply every core: a matrix product split over T threads ends when the slowest thread
ends. When another program keeps a core busy, the BLAS thread that shares that core gets half
of it (or waits a whole scheduler slice), and the other threads spin until it catches up; a
training iteration is dozens of such products, so it can become several times slower than with
one thread fewer. "auto" therefore looks at /proc/stat over a tenth of a second when confnet
starts and uses the cores that were idle then (at least one, at most the cores this process may
run on): every core on a quiet machine, fewer on a busy one. Where /proc/stat does not exist
it uses every core.

confnet's own host loops (the copies and sums of Convolution, MAX pooling, ReLU) split their
work over the same number of threads (``split``, ``elementwise``); numpy releases the GIL in
its loops, so they run in parallel. confnet/host_blas.py shares out the products BLAS's own
threads share badly the same way.

The BLAS pool is set with threadpoolctl (a dependency: a busy machine is the common case, so
the default must hold without extras). confnet's own workers (convert-data's decoding processes) default to
the same count. A data layer's prefetch thread is one thread that waits on its queue most of
the time, so it is not counted.

OpenBLAS's idle pool threads spin (yielding in a loop) for 2^OPENBLAS_THREAD_TIMEOUT cycles
after each product before they sleep. Its default, 28 (about 0.1 s), keeps them spinning
through all of the numpy work between a layer's products, on the cores confnet's own workers
(and other programs) need: on CIFAR-10-quick, pooling split over two workers ran no faster
than one thread right after a product (5.8 ms alone, 8.9 ms after a product). confnet sets
18 (about 0.1 ms: the threads stay awake between the products of one layer) when it is
imported, unless the variable is set already; OpenBLAS reads it when it loads, so this takes
effect when confnet is imported before numpy (as the ``confnet`` command does).
"""

import itertools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import ConfnetError

ENV = "CONFNET_THREADS"

# Host copies smaller than this many bytes run in the calling thread: handing work to another
# thread costs tens of microseconds.
_MIN_SPLIT_BYTES = 1 << 20

log = logging.getLogger("confnet")

# See the module docstring: how long OpenBLAS's idle threads spin, as log2 of CPU cycles.
BLAS_SPIN = ("OPENBLAS_THREAD_TIMEOUT", "18")

_state = {"requested": None, "count": None, "limiter": None, "pool": None}


def limit_blas_spin():
    """Set OpenBLAS's idle-thread spin (BLAS_SPIN) unless the environment sets it: called
    when confnet is imported, before numpy loads OpenBLAS."""
    os.environ.setdefault(*BLAS_SPIN)


def usable_cores():
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _cpu_times():
    """(idle, total) jiffies of all cores from /proc/stat's first line, or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def idle_cores(interval=0.1):
    """How many of the machine's cores were idle over the next ``interval`` seconds (a float),
    or None where /proc/stat cannot be read."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(interval)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    idle, total = second[0] - first[0], second[1] - first[1]
    return idle / total * (os.cpu_count() or 1)


def auto_count():
    """The "auto" choice: the idle cores rounded to the nearest whole core, in
    [1, usable_cores()]; every usable core where the load cannot be read."""
    cores = usable_cores()
    idle = idle_cores()
    if idle is None:
        return cores
    return max(1, min(cores, int(idle + 0.5)))


def parse(value, where):
    """A thread count from the command line or the environment: a whole number >= 0 or
    "auto" (0); returns the number (0 for auto)."""
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return 0
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise ConfnetError(f"{where}: '{value}' is not a thread count; give a whole number "
                           "(1, 2, ...) or 'auto' (0)")
    return count


def request(threads):
    """Remember the --threads option (None: not given) for ``configure``; checked now, applied
    when a command starts computing."""
    _state["requested"] = None if threads is None else parse(threads, "--threads")
    _state["count"] = None


def configure(threads=None):
    """Set the thread count and limit the BLAS pool to it, once: from ``threads`` if given,
    else the --threads option (``request``), else $CONFNET_THREADS, else auto. Returns it."""
    if threads is not None:
        request(threads)
    elif _state["count"] is not None:
        return _state["count"]
    requested = _state["requested"]
    if requested is None:
        requested = parse(os.environ.get(ENV, ""), f"environment variable {ENV}")
    count = requested or auto_count()
    _state["count"] = count
    import threadpoolctl
    _state["limiter"] = threadpoolctl.threadpool_limits(count, user_api="blas")
    log.debug("threads: %d (BLAS pool and workers)", count)
    return count


def count():
    """The thread count (``configure`` runs first if it has not yet)."""
    return configure()


def workers():
    """How many threads confnet's host loops split their work over: the count ``configure``
    set, or 1 when it has not run (a program that only imports confnet keeps one thread)."""
    return _state["count"] or 1


def shares_out(nbytes, n):
    """Whether ``split`` shares work on ``n`` parts touching ``nbytes`` out over several
    workers (else it runs in the calling thread)."""
    return min(workers(), n) > 1 and nbytes >= _MIN_SPLIT_BYTES


def split(n, fn, nbytes):
    """Call ``fn(start, stop)`` over contiguous parts of range(n), one per worker, in
    parallel, and wait for all of them; ``nbytes`` (the bytes the work touches) below
    _MIN_SPLIT_BYTES or one worker: a single call here. ``fn`` must be thread-safe on
    disjoint parts (numpy copies and adds into disjoint slices are)."""
    if not shares_out(nbytes, n):
        fn(0, n)
        return
    parts = min(workers(), n)
    pool = _state["pool"]
    if pool is None or pool._max_workers < parts - 1:
        pool = _state["pool"] = ThreadPoolExecutor(parts - 1, thread_name_prefix="confnet")
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [pool.submit(fn, a, b) for a, b in itertools.pairwise(bounds[1:])]
    fn(bounds[0], bounds[1])
    for future in futures:
        future.result()


def elementwise(fn, out, *inputs):
    """``fn(out_part, *input_parts)`` over matching parts of ``out`` and ``inputs`` (C-contiguous
    arrays of out.size elements each, flattened), split over the workers as ``split`` does:
    for numpy ufuncs over whole blobs (a ReLU), which release the GIL."""
    flat = [a.reshape(-1) for a in (out, *inputs)]
    split(out.size, lambda a, b: fn(*(f[a:b] for f in flat)), out.nbytes * len(flat))
