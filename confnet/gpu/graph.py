"""Device graphs: what lets a training iteration be captured once and replayed.

A replayed graph runs the kernels it recorded with the arguments they had at capture, so a value
that changes from one iteration to the next (the learning rate of an ``inv`` policy, Adam's bias
correction, a dropout seed) cannot be a kernel argument: kernels read it from device memory,
from a slot of the device's ``ScalarTable``, which the host fills before each iteration and
uploads in one small host->device copy (``flush``) outside the graph.

``DriverGraphs`` is the CUDA driver's stream-capture API through ctypes (pycuda has none): the
PyCudaBackend captures its one stream with it. The emulator records its work in Python instead
(``EmuBackend``); both sit behind ``Backend.begin_capture``/``end_capture``/``replay``.

``GraphRunner`` is the policy the solver uses: segments of an iteration, each under a key, run
eagerly while warming up, then captured once and replayed; anything that breaks capture turns
graphs off for good, with one log line naming the cause.
"""

import collections
import ctypes
import logging

import numpy as np

from ..errors import ConfnetError
from .backend import CaptureBroken

log = logging.getLogger("confnet")


class ScalarTable:
    """Per-iteration 32-bit values in device memory, in chunks of ``CHUNK`` words.

    ``reserve(n)`` hands out a ``Slot`` of n words whose device address never changes (a graph
    keeps it); ``slot.set_float``/``set_word`` write the host copy; ``flush()`` uploads every
    chunk written since the last flush, one host->device copy each (one in practice: a chunk
    holds 1024 values). Being queued on the stream like the kernels, the upload never overtakes
    the work queued before it, which still reads the previous values.

    ``pass_id`` counts forward/backward passes (``end_pass``): a layer that prepared its values
    for pass k (``Layer.prepare_pass``) knows, at forward, whether they are for this pass.
    """

    CHUNK = 1024

    def __init__(self, backend):
        self.backend = backend
        self._chunks = []
        self.pass_id = 0

    def reserve(self, words):
        if not 0 < words <= self.CHUNK:
            raise ConfnetError(f"scalar table: a slot of {words} words (1 to {self.CHUNK})")
        if not self._chunks or self._chunks[-1].used + words > self.CHUNK:
            self._chunks.append(_Chunk(self.backend, self.CHUNK))
        chunk = self._chunks[-1]
        slot = Slot(chunk, chunk.used, words)
        chunk.used += words
        return slot

    def flush(self):
        """Upload the chunks written since the last flush (nothing when none was)."""
        for chunk in self._chunks:
            if chunk.dirty:
                self.backend.htod(chunk.ptr, chunk.host[:chunk.used])
                chunk.dirty = False

    def end_pass(self):
        self.pass_id += 1


class _Chunk:
    def __init__(self, backend, words):
        self.ptr = backend.alloc(4 * words)
        self.host = np.zeros(words, np.uint32)
        self.used = 0
        self.dirty = True


class Slot:
    """``words`` consecutive 32-bit values of a ScalarTable; ``pointer`` is their device
    address, as a kernel's ``const float*`` / ``const unsigned int*`` parameter takes it."""

    def __init__(self, chunk, offset, words):
        self._chunk, self._offset, self.words = chunk, offset, words

    @property
    def pointer(self):
        return self._chunk.ptr + 4 * self._offset

    def set_float(self, index, value):
        self._write(index, np.array(value, np.float32).view(np.uint32))

    def set_word(self, index, bits):
        self._write(index, np.uint32(int(bits) & 0xFFFFFFFF))

    def _write(self, index, bits):
        if not 0 <= index < self.words:
            raise IndexError(f"slot of {self.words} words: index {index}")
        host = self._chunk.host
        if host[self._offset + index] != bits:
            host[self._offset + index] = bits
            self._chunk.dirty = True


# -- the driver's graph API -------------------------------------------------------------------

# CUstreamCaptureMode. THREAD_LOCAL: while this thread captures, the driver refuses this thread's
# calls that cannot be captured (a synchronous copy, an allocation), while other threads (data
# prefetchers, a communication thread, user code) keep working. GLOBAL would make those calls
# fail in every thread of the process during the capture; RELAXED would let this thread's
# mistakes through silently.
CAPTURE_MODE_THREAD_LOCAL = 1


class DriverGraphs:
    """cuStreamBeginCapture_v2 ... cuGraphDestroy through ctypes on ``lib`` (default: the
    driver library, libcuda.so.1). Every CUresult is checked; a failure is a ConfnetError with
    the driver's name for it (cuGetErrorName). Handles are plain ints."""

    def __init__(self, lib=None):
        self.lib = lib if lib is not None else _load_driver()

    def begin_capture(self, stream):
        self._call("cuStreamBeginCapture_v2", ctypes.c_void_p(stream),
                   ctypes.c_int(CAPTURE_MODE_THREAD_LOCAL))

    def end_capture(self, stream):
        """The captured graph's handle; the stream is no longer capturing."""
        graph = ctypes.c_void_p()
        self._call("cuStreamEndCapture", ctypes.c_void_p(stream), ctypes.pointer(graph))
        return graph.value

    def instantiate(self, graph):
        executable = ctypes.c_void_p()
        self._call("cuGraphInstantiateWithFlags", ctypes.pointer(executable),
                   ctypes.c_void_p(graph), ctypes.c_ulonglong(0))
        return executable.value

    def launch(self, executable, stream):
        self._call("cuGraphLaunch", ctypes.c_void_p(executable), ctypes.c_void_p(stream))

    def destroy(self, executable, graph):
        try:
            if executable is not None:
                self._call("cuGraphExecDestroy", ctypes.c_void_p(executable))
        finally:
            if graph is not None:
                self._call("cuGraphDestroy", ctypes.c_void_p(graph))

    def is_capturing(self, stream):
        status = ctypes.c_int()
        self._call("cuStreamIsCapturing", ctypes.c_void_p(stream), ctypes.pointer(status))
        return status.value != 0   # CU_STREAM_CAPTURE_STATUS_NONE is 0

    def error_name(self, result):
        name = ctypes.c_char_p()
        if self.lib.cuGetErrorName(ctypes.c_int(result), ctypes.pointer(name)) == 0 and name.value:
            return name.value.decode()
        return "an unknown error"

    def _call(self, function, *args):
        result = getattr(self.lib, function)(*args)
        if result != 0:
            raise ConfnetError(f"CUDA driver: {function} failed with {self.error_name(result)} "
                               f"({result})")


def _load_driver():
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError as error:
        raise ConfnetError(f"CUDA graphs need the NVIDIA driver library libcuda.so.1 ({error}); "
                           "run with --no-graph, or on a machine with the driver") from None


# -- capture / replay policy ------------------------------------------------------------------

class GraphRunner:
    """Runs segments of an iteration (``run(key, work)``) eagerly, captured, or replayed.

    The first ``warmup`` iterations run eagerly: the first allocates every buffer and loads
    every kernel; the second is a plain one, whose pool use per segment (``Pool.measure``) tells
    how many cached blocks a capture of it needs: a capture may not call the driver's allocator,
    and each graph keeps its own temporaries, so the cache is filled up to that before each
    capture. The iteration after captures each segment the first time its key comes (and replays the new
    graph at once: a capture records the work, it does not run it), and later ones replay.
    ``inputs_changed()`` drops the graphs (the net's shapes changed): that iteration and the
    next ``warmup - 1`` run eagerly (buffers of the new shapes allocated, the pool settled), and
    the one after captures again, up to ``max_captures`` captures in all. Anything
    that breaks a capture (``CaptureBroken``) ends graphs for the run: the segment runs again
    eagerly and one log line names the cause.

    ``before_replay``/``after_replay``: callbacks around each replay (the solver keeps the
    blobs' host/device bookkeeping right with them, since a replay runs no Python).
    ``save_state``: called before a capture, returns a function that restores that host-side
    bookkeeping if the capture breaks (the Python code ran, but the recorded work was dropped),
    so the segment's eager rerun starts where the capture did.
    """

    def __init__(self, backend, warmup=2, max_captures=4, before_replay=None, after_replay=None,
                 save_state=None):
        self.backend, self.warmup, self.max_captures = backend, warmup, max_captures
        self.before_replay, self.after_replay = before_replay, after_replay
        self.save_state = save_state
        self.graphs = {}
        self._demand = {}   # key -> the pool blocks its last eager run allocated at most at once
        self.captures = 0
        self.replays = 0
        self.off_reason = None
        self._iterations = 0
        self._capture_from = warmup   # the first iteration that may capture

    @property
    def enabled(self):
        return self.off_reason is None

    def iteration_done(self):
        self._iterations += 1

    def inputs_changed(self, what):
        """The net's input shapes changed: eager again for ``warmup`` iterations, this one
        included, then capture again."""
        self.release()
        self._capture_from = self._iterations + self.warmup
        if self.captures >= self.max_captures:
            self.turn_off(f"the input shapes keep changing ({what}); captured "
                          f"{self.captures} times")

    def run(self, key, work):
        if not self.enabled or self._iterations < self._capture_from:
            with self.backend.pool.measure(collections.Counter()) as demand:
                work()
            self._demand[key] = demand
            return
        graph = self.graphs.get(key)
        if graph is None:
            graph = self._capture(key, work)
            if graph is None:
                work()
                return
        if self.before_replay:
            self.before_replay()
        self.backend.replay(graph)
        self.replays += 1
        if self.after_replay:
            self.after_replay()

    def _capture(self, key, work):
        # Each graph keeps the temporaries of its pass: the cache must hold a new set for it.
        self.backend.pool.ensure_cached(self._demand.get(key, {}))
        restore = self.save_state() if self.save_state else None
        self.backend.begin_capture()
        try:
            work()
        except CaptureBroken as broken:
            if restore:
                restore()
            self.turn_off(broken.reason)
            return None
        except BaseException:
            self.backend.abandon_capture()
            raise
        graph = self.graphs[key] = self.backend.end_capture()
        if not self.captures:
            log.info("Captured the training iteration as a CUDA graph; replaying it from now on")
        self.captures += 1
        return graph

    def turn_off(self, reason):
        if self.off_reason is None:
            self.off_reason = reason
            log.info("CUDA graphs off: %s; the iterations run eagerly", reason)
        self.release()

    def release(self):
        for graph in self.graphs.values():
            graph.release()
        self.graphs.clear()
