"""Per-layer timing of a net's forward and backward passes (``confnet time``), as Caffe's
``caffe time``: one warm-up forward+backward, then ``iterations`` timed ones; each layer's time is
the median (or mean) over them.

Nets with Input layers are timed on random inputs: a blob whose name contains "label" gets
integer class indices in [0, C), with C the channel count of the prediction a loss or accuracy
layer compares it with (0 when none is found); every other input gets standard normal values.
Data layers read their database as in training, so it must exist.

As in Caffe's tool, backward is timed for every layer that has one: the CLI builds the net with
``force_backward``, and outputs that are not losses (a deploy net's) get unit gradients.

On a device (``--gpu``) each step is bracketed by two events of the backend
(``record_event``/``elapsed``: device events on a GPU, host time on the emulator, which runs each
kernel to completion), so the host never waits inside a pass: the times of a pass are read once
it is queued. The memory column then comes from the device allocator: the bytes it handed out
while the layer ran its warm-up pass (blobs get device memory when first used: the layer's
tops, gradients, parameters and buffers), and the totals line gives the allocator's in-use and
peak bytes.

Memory lines under the table: the bytes of blob data, each storage counted once (a TEST net
built with ``share_blobs`` counts its shared buffers, and the bytes they replace), and of the
parameters; the process's peak resident memory (``getrusage``'s ``ru_maxrss``: everything the
process ever held at once, Python and numpy included, since it started); on a device, the
allocator's bytes in use, its peak and what it holds from the driver (its cache included).

``backward=False`` times forward passes only (``confnet time --phase TEST``: the inference net,
whose blobs share memory).
"""

import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import gpu
from .layers.input import Input


@dataclass
class LayerTiming:
    name: str
    type: str
    top_shapes: list
    memory: int                      # bytes of the layer's top data and parameters (on a
                                     # device: allocated during the layer's warm-up pass)
    forward: list = field(default_factory=list)    # seconds per timed iteration
    backward: list = field(default_factory=list)   # empty when the layer runs no backward


@dataclass
class Timing:
    net_name: str
    iterations: int
    layers: list
    device_memory: dict = None       # on a device: the allocator's {"in_use", "peak", "held"}
    blob_bytes: int = 0              # bytes of the blobs' data storages, each counted once
    param_bytes: int = 0             # bytes of the learnable parameters' data
    unshared_bytes: int = None       # a net with a memory plan: blob data without sharing
    host_peak: int = 0               # the process's peak resident bytes (ru_maxrss)


def fill_inputs(net, seed=0):
    """Random values in the tops of the net's Input layers (see the module docstring)."""
    g = np.random.default_rng(seed)
    for i in range(len(net.layers)):
        _fill_input(net, i, g)


def _fill_input(net, i, g):
    """Random values in the tops of layer ``i`` if it is an Input layer."""
    if not isinstance(net.layers[i], Input):
        return
    for name in net.top_ids[i]:
        blob = net.blobs[name]
        if "label" in name.lower():
            classes = _classes_for(net, name)
            blob.set_data(g.integers(0, max(classes, 1), blob.shape))
        else:
            blob.set_data(g.standard_normal(blob.shape))


def _classes_for(net, label):
    """Channel count of the predictions compared with ``label`` (following Split layers)."""
    names, counts = {label}, []
    for layer, bottoms, tops in zip(net.layers, net.bottom_ids, net.top_ids):
        if layer.type_name == "Split" and bottoms[0] in names:
            names.update(tops)
        elif len(bottoms) > 1 and bottoms[1] in names:
            prediction = net.blobs[bottoms[0]]
            if prediction.num_axes > 1:
                counts.append(prediction.shape[1])
    return min(counts, default=0)


def time_net(net, iterations=50, clock=time.perf_counter, progress=None, backward=True):
    """Time every layer of ``net`` over ``iterations`` forward+backward passes (forward only
    with ``backward=False``), after one untimed warm-up pass. ``progress(done, iterations)`` is
    called after each pass. On the CPU ``clock`` reads the time; on a device the backend's
    events do. Returns a Timing (``table`` formats it)."""
    backend = gpu.current()
    timer = _DeviceTimer(backend) if backend is not None else _HostTimer(clock)
    inputs = np.random.default_rng(0)
    layers = [LayerTiming(name, layer.type_name, [net.blobs[t].shape for t in tops],
                          _layer_bytes(net, layer, tops))
              for name, layer, tops in zip(net.layer_names, net.layers, net.top_ids)]
    for it in range(iterations + 1):
        allocated = _Allocations(backend, len(net.layers), counting=it == 0)
        forward = _run_forward(net, timer, allocated, inputs if it == 0 else None)
        backward = _run_backward(net, timer, allocated) if backward else None
        if progress is not None:
            progress(it, iterations)
        if it == 0:
            if backend is not None:
                for timing, nbytes in zip(layers, allocated.bytes):
                    timing.memory = nbytes
            continue
        for i, timing in enumerate(layers):
            timing.forward.append(forward[i])
            if backward is not None and net.layer_need_backward[i]:
                timing.backward.append(backward[i])
    for timing, tops in zip(layers, net.top_ids):
        timing.top_shapes = [net.blobs[t].shape for t in tops]
    storages = {id(b.storage): b.storage.capacity * b.dtype.itemsize for b in net.blobs.values()}
    blob_bytes = sum(storages.values())
    param_bytes = sum({id(b.storage): _nbytes(b) for b in net.learnable_params}.values())
    plan = getattr(net, "memory_plan", None)
    unshared = None if plan is None else blob_bytes - plan.planned_bytes + plan.unplanned_bytes
    device_memory = None
    if backend is not None:
        pool = backend.pool
        device_memory = {"in_use": pool.in_use, "peak": pool.peak, "held": pool.held}
    return Timing(net.name, iterations, layers, device_memory, blob_bytes, param_bytes, unshared,
                  peak_resident_bytes())


def peak_resident_bytes():
    """The process's peak resident memory in bytes (ru_maxrss: kilobytes on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _HostTimer:
    """Marks are readings of ``clock``: on the CPU a step is done when its call returns."""

    def __init__(self, clock):
        self.mark = clock

    def seconds(self, spans):
        return [end - start for start, end in spans]


class _DeviceTimer:
    """Marks are the backend's events, recorded in the stream's order of work without waiting;
    ``seconds`` waits for the last one (once per pass) and reads the device time of each span."""

    def __init__(self, backend):
        self.mark, self._backend = backend.record_event, backend

    def seconds(self, spans):
        return [self._backend.elapsed(start, end) for start, end in spans]


class _Allocations:
    """Device bytes the allocator hands out during each layer's steps (warm-up pass only)."""

    def __init__(self, backend, layers, counting):
        self._pool = backend.pool if backend is not None and counting else None
        self.bytes = [0] * layers

    def run(self, i, step):
        before = self._pool.in_use if self._pool is not None else 0
        step()
        if self._pool is not None:
            self.bytes[i] += self._pool.in_use - before


def _run_forward(net, timer, allocated, inputs):
    """Forward through every layer; seconds per layer. ``inputs`` (a generator, in the warm-up
    pass): fill the Input layers' tops first, so their memory counts for them."""
    spans = []
    for i in range(len(net.layers)):
        def step(i=i):
            if inputs is not None:
                _fill_input(net, i, inputs)
            start = timer.mark()
            net.forward_layer(i)
            spans.append((start, timer.mark()))
        allocated.run(i, step)
    return timer.seconds(spans)


def _run_backward(net, timer, allocated):
    for name in net.outputs:
        net.blobs[name].set_diff(1.0)
    for layer, tops in zip(net.layers, net.top_ids):
        for name, weight in zip(tops, layer.loss_weights):
            if weight:
                net.blobs[name].set_diff(weight)
    spans, timed = [], [i for i in reversed(range(len(net.layers))) if net.layer_need_backward[i]]
    for i in timed:
        def step(i=i):
            start = timer.mark()
            net.backward_layer(i)
            spans.append((start, timer.mark()))
        allocated.run(i, step)
    times = [0.0] * len(net.layers)
    for i, seconds in zip(timed, timer.seconds(spans)):
        times[i] = seconds
    return times


def _nbytes(blob):
    return blob.count * blob.dtype.itemsize


def _layer_bytes(net, layer, tops):
    return sum(_nbytes(net.blobs[t]) for t in tops) + sum(_nbytes(b) for b in layer.blobs)


def _stat(values, use_mean):
    if not values:
        return None
    return float(np.mean(values) if use_mean else np.median(values))


def table(timing, use_mean=False, columns=80):
    """The per-layer report as aligned text lines, then the totals; the layer names and top
    shapes are shortened (middle replaced by '~') so that rows fit in ``columns``."""
    stat = "mean" if use_mean else "median"
    rows = []
    for t in timing.layers:
        f, b = _stat(t.forward, use_mean), _stat(t.backward, use_mean)
        rows.append((t, f, b, f + (b or 0.0)))
    total = sum(r[3] for r in rows) or 1.0
    header = ("layer", "type", "forward ms", "backward ms", "share", "top shape", "memory")
    lines = [header]
    for t, f, b, both in rows:
        shapes = ", ".join("x".join(map(str, s)) or "scalar" for s in t.top_shapes) or "-"
        lines.append((t.name, t.type, f"{1e3 * f:.3f}", "-" if b is None else f"{1e3 * b:.3f}",
                      f"{100 * both / total:.1f}%", shapes, format_bytes(t.memory)))
    widths = _fit([max(len(line[c]) for line in lines) for c in range(len(header))], columns)
    lines = [[_shorten(cell, w) for cell, w in zip(line, widths)] for line in lines]
    right = {2, 3, 4, 6}
    text = ["  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                      for c, (cell, w) in enumerate(zip(line, widths))).rstrip()
            for line in lines]
    fwd, bwd = _totals(timing, use_mean)
    text.append(f"per iteration ({stat} of {timing.iterations}): forward {1e3 * fwd:.3f} ms, "
                f"backward {1e3 * bwd:.3f} ms, forward+backward {1e3 * (fwd + bwd):.3f} ms")
    text.extend(memory_lines(timing))
    return text


def memory_lines(timing):
    """The memory lines under the table (see the module docstring)."""
    if timing.unshared_bytes is None:
        blobs = f"{format_bytes(timing.blob_bytes)} of blob data"
    else:
        blobs = (f"{format_bytes(timing.blob_bytes)} of blob data (shared by lifetime; "
                 f"{format_bytes(timing.unshared_bytes)} unshared)")
    lines = [f"memory: {blobs}, {format_bytes(timing.param_bytes)} of parameters",
             f"host peak: {format_bytes(timing.host_peak)} resident (process maximum RSS)"]
    if timing.device_memory is not None:
        m = timing.device_memory
        lines.append(f"device memory (allocator): {format_bytes(m['in_use'])} in use, "
                     f"{format_bytes(m['peak'])} peak, {format_bytes(m['held'])} held; a "
                     "layer's memory is what it was given in the warm-up pass")
    return lines


_SHRINKABLE = (0, 5, 1)   # layer name, top shape, type: the columns that may be shortened
_NARROWEST = 8


def _fit(widths, columns):
    """Narrow the widest shrinkable column, one character at a time, until the row (two spaces
    between columns) fits in ``columns`` or none can shrink further."""
    widths = list(widths)
    while sum(widths) + 2 * (len(widths) - 1) > columns:
        widest = max(_SHRINKABLE, key=lambda c: widths[c])
        if widths[widest] <= _NARROWEST:
            break
        widths[widest] -= 1
    return widths


def _shorten(text, width):
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "~" + text[len(text) - (width - 1 - head):]


def _totals(timing, use_mean):
    """Forward and backward time of a whole iteration (the statistic of per-iteration sums)."""
    n = timing.iterations
    fwd = [sum(t.forward[i] for t in timing.layers) for i in range(n)]
    bwd = [sum(t.backward[i] for t in timing.layers if t.backward) for i in range(n)]
    return _stat(fwd, use_mean) or 0.0, _stat(bwd, use_mean) or 0.0


def format_bytes(n):
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}"
