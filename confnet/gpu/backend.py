"""The device backend interface: what the rest of confnet may ask of a GPU.

Two implementations sit behind it, and layers never know which one runs them:

- ``PyCudaBackend`` (``pycuda_backend.py``): a real NVIDIA device through pycuda, every call on
  one confnet stream;
- ``EmuBackend`` (``emu.py``): the CUDA-on-CPU emulator, which compiles the unchanged ``cuda/*.cu``
  files with g++ and runs every CUDA thread as a fiber.

Device memory is addressed by plain integers (device pointers), as kernel arguments are. The
interface is deliberately small:

    ptr = backend.alloc(nbytes)                 # from the caching pool (see Pool)
    backend.free(ptr)                           # back to the pool
    backend.htod(ptr, host_array)               # host -> device, counted
    backend.dtoh(host_array, ptr)               # device -> host, counted
    backend.dtod(dst, src, nbytes)              # device -> device (not counted: no host trip)
    backend.memset_d32(ptr, bits, count)        # fill ``count`` 32-bit words with ``bits``
    kernel = backend.function("neuron.cu", "relu_forward")
    backend.launch(kernel, grid, block, args, shared=0)
    backend.synchronize()
    event = backend.record_event()              # a mark in the stream's order of work
    seconds = backend.elapsed(start, end)       # device time between two marks (waits for end)
    backend.upload_async(ptr, host_array, after=event)   # host -> device, overlapping kernels

    backend.begin_capture()                     # record the stream's work instead of running it
    graph = backend.end_capture()               # ... into a graph, replayed as a whole:
    backend.replay(graph)                       # the recorded kernels, memsets, device copies
    graph.release()                             # (and the blocks it held go back to the pool)
    backend.scalars                             # per-iteration values a graph reads (graph.py)

``args`` is a sequence of Python ints (device pointers or int32 values passed to ``int``
parameters) and numpy scalars (``np.float32``, ``np.int32``); each backend converts them to the
kernel's parameter types. Launch geometry is never chosen here: ``confnet/gpu/launch.py`` owns it.

While ``capturing``, only kernels, memsets and device-to-device copies may be queued: anything
else (a host<->device copy, a synchronize, an event, an allocation the pool cannot serve) raises
``CaptureBroken`` naming it, after abandoning the capture (the stream works normally again).
Blocks freed during a capture are held by the graph until it is released, because the graph
keeps writing them.

``copies`` counts host<->device transfers (``htod``, ``dtoh``: number of calls and bytes), so tests
can assert how many a training iteration does.
"""

import collections
import contextlib
import os
from importlib import resources

from ..errors import ConfnetError


class CaptureBroken(ConfnetError):
    """Work that cannot be part of a device graph was asked for while one was captured; the
    capture has been abandoned. ``reason`` names the work."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__(f"graph capture broken: {reason}")


class Graph:
    """A captured sequence of device work, replayed with ``backend.replay(graph)``. ``handle`` is
    the backend's own record; ``held`` the pool blocks freed during the capture, given back by
    ``release``."""

    def __init__(self, backend, handle, held):
        self.backend, self.handle, self.held = backend, handle, held

    def release(self):
        """Destroy the graph (once) and return the blocks it held to the pool."""
        if self.handle is None:
            return
        handle, self.handle = self.handle, None
        self.backend._destroy_graph(handle)
        for ptr in self.held:
            self.backend.free(ptr)
        self.held = []


class CopyCounter:
    """Host<->device transfers since the last ``reset``: calls and bytes per direction."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.htod = self.dtoh = 0
        self.htod_bytes = self.dtoh_bytes = 0

    def __repr__(self):
        return (f"CopyCounter(htod={self.htod} ({self.htod_bytes} B), "
                f"dtoh={self.dtoh} ({self.dtoh_bytes} B))")


class Pool:
    """A caching allocator: freed blocks are kept by rounded size and handed out again, so a
    training loop that reshapes the same blobs every iteration never calls the driver.

    Sizes round up to 256 bytes (every block stays aligned for float4 loads) and, above 1 MiB, to
    the next 1/8 of a power of two, which bounds the waste to 12.5%. ``raw_alloc``/``raw_free``
    are the backend's real allocation calls.
    """

    def __init__(self, raw_alloc, raw_free):
        self._raw_alloc, self._raw_free = raw_alloc, raw_free
        self._cached = collections.defaultdict(list)   # rounded size -> free pointers
        self._size = {}                                 # live pointer -> rounded size
        self.in_use = self.peak = self.held = 0
        self._measured = None   # while measuring: pointer -> size of blocks allocated since
        self._live, self._most = collections.Counter(), collections.Counter()

    @staticmethod
    def round_size(nbytes):
        nbytes = max(int(nbytes), 1)
        if nbytes <= 1 << 20:
            return (nbytes + 255) & ~255
        step = 1 << (nbytes.bit_length() - 4)
        return (nbytes + step - 1) // step * step

    def alloc(self, nbytes):
        size = self.round_size(nbytes)
        free = self._cached[size]
        if free:
            ptr = free.pop()
        else:
            try:
                ptr = self._raw_alloc(size)
            except MemoryError:
                self.release_cached()
                ptr = self._raw_alloc(size)
            self.held += size
        self._size[ptr] = size
        if self._measured is not None:
            self._measured[ptr] = size
            self._live[size] += 1
            self._most[size] = max(self._most[size], self._live[size])
        self.in_use += size
        self.peak = max(self.peak, self.in_use)
        return ptr

    def size_of(self, ptr):
        """The rounded size of live block ``ptr``."""
        return self._size[ptr]

    def has_cached(self, nbytes):
        """Whether ``alloc(nbytes)`` would be served from the cache, without the driver."""
        return bool(self._cached.get(self.round_size(nbytes)))

    def free(self, ptr):
        size = self._size.pop(ptr)
        if self._measured is not None and self._measured.pop(ptr, None) is not None:
            self._live[size] -= 1
        self.in_use -= size
        self._cached[size].append(ptr)

    @contextlib.contextmanager
    def measure(self, demand):
        """Record into the Counter ``demand`` (rounded size -> blocks) the most blocks of each
        size that were live at once among those allocated inside the ``with``: what the same
        work will ask of the cache when it runs again (a capture must not call the driver)."""
        self._measured, self._live, self._most = {}, collections.Counter(), demand
        try:
            yield demand
        finally:
            self._measured = None

    def ensure_cached(self, demand):
        """Fill the cache up to ``demand`` (rounded size -> blocks) with the driver's blocks."""
        for size, count in demand.items():
            for _ in range(count - len(self._cached[size])):
                self._cached[size].append(self._raw_alloc(size))
                self.held += size

    def release_cached(self):
        """Give every cached (free) block back to the driver."""
        for size, ptrs in self._cached.items():
            for ptr in ptrs:
                self._raw_free(ptr)
                self.held -= size
        self._cached.clear()


class Backend:
    """Base of both backends: the pool, the copy counter, the kernel cache."""

    name = "?"

    def __init__(self):
        self.copies = CopyCounter()
        self.pool = Pool(self._raw_alloc, self._raw_free)
        self._functions = {}
        self.capturing = False
        self._held = []       # blocks freed during the capture in progress
        self._scalars = None

    # -- memory --------------------------------------------------------------------------------
    def alloc(self, nbytes):
        if self.capturing:
            return self._alloc_in_capture(nbytes)
        return self.pool.alloc(nbytes)

    def free(self, ptr):
        if self.capturing:
            self._held.append(ptr)
        else:
            self.pool.free(ptr)

    def _alloc_in_capture(self, nbytes):
        """A block freed earlier in this capture (the graph's work is ordered as the stream's,
        so reusing it is as safe as in an eager pass), else one from the pool's cache; never
        the driver's allocator."""
        size = self.pool.round_size(nbytes)
        for k, ptr in enumerate(self._held):
            if self.pool.size_of(ptr) == size:
                return self._held.pop(k)
        if not self.pool.has_cached(nbytes):
            self._break_capture(f"an allocation of {int(nbytes)} bytes the pool cannot serve")
        return self.pool.alloc(nbytes)

    def htod(self, ptr, array):
        self._refuse_in_capture(f"a host->device copy of {array.nbytes} bytes")
        self.copies.htod += 1
        self.copies.htod_bytes += array.nbytes
        self._htod(ptr, array)

    def dtoh(self, array, ptr):
        self._refuse_in_capture(f"a device->host copy of {array.nbytes} bytes (a host read)")
        self.copies.dtoh += 1
        self.copies.dtoh_bytes += array.nbytes
        self._dtoh(array, ptr)

    def upload_async(self, ptr, array, after=None):
        """Host -> device copy of ``array`` into ``ptr`` (counted as an htod) that all work
        queued after this call sees, while the host does not wait and the copy may run beside
        kernels queued before it. ``after`` (a ``record_event`` mark, or None): the copy starts
        only once the work queued before that mark has finished; give the mark recorded after
        the last use of ``ptr``'s old contents (the data layers alternate two device buffers,
        so a batch's copy overlaps the previous iteration's kernels). This default is a plain
        ``htod``; the GPU backend copies from page-locked memory on a second stream."""
        self.htod(ptr, array)

    @property
    def scalars(self):
        """This device's table of per-iteration values (``graph.ScalarTable``)."""
        if self._scalars is None:
            from .graph import ScalarTable
            self._scalars = ScalarTable(self)
        return self._scalars

    # -- graphs --------------------------------------------------------------------------------
    def begin_capture(self):
        """From now on, record the stream's work (kernels, memsets, device copies) into a graph
        instead of running it."""
        if self.capturing:
            raise ConfnetError("begin_capture: a capture is already in progress")
        self._begin_capture()
        self.capturing, self._held = True, []

    def end_capture(self):
        """The graph of the work recorded since ``begin_capture``; the stream runs normally."""
        if not self.capturing:
            raise ConfnetError("end_capture: no capture in progress")
        self.capturing = False
        return Graph(self, self._end_capture(), self._take_held())

    def abandon_capture(self):
        """Stop capturing and discard what was recorded (no-op when not capturing)."""
        if self.capturing:
            self.capturing = False
            self._abandon_capture()
            for ptr in self._take_held():
                self.free(ptr)

    def replay(self, graph):
        """Queue the whole recorded work of ``graph`` again, in its order, on the stream."""
        if graph.handle is None:
            raise ConfnetError("replay: this graph has been released")
        self._refuse_in_capture("a graph replay")
        self._replay(graph.handle)

    def _take_held(self):
        held, self._held = self._held, []
        return held

    def _refuse_in_capture(self, what):
        if self.capturing:
            self._break_capture(what)

    def _break_capture(self, what):
        self.abandon_capture()
        raise CaptureBroken(what)

    # -- kernels -------------------------------------------------------------------------------
    def function(self, cu_file, name):
        """The kernel ``name`` of ``cuda/<cu_file>``, compiled on first use and cached."""
        key = (cu_file, name)
        if key not in self._functions:
            self._functions[key] = self._load(cu_file, name)
        return self._functions[key]

    # -- what each backend provides ----------------------------------------------------------
    def _raw_alloc(self, nbytes):
        raise NotImplementedError

    def _raw_free(self, ptr):
        raise NotImplementedError

    def _htod(self, ptr, array):
        raise NotImplementedError

    def _dtoh(self, array, ptr):
        raise NotImplementedError

    def dtod(self, dst, src, nbytes):
        raise NotImplementedError

    def memset_d32(self, ptr, bits, count):
        raise NotImplementedError

    def _load(self, cu_file, name):
        raise NotImplementedError

    def launch(self, kernel, grid, block, args, shared=0):
        raise NotImplementedError

    def synchronize(self):
        """Wait until the work queued so far has finished."""
        self._refuse_in_capture("a synchronize")
        self._synchronize()

    def record_event(self):
        """A mark placed in the order of the work queued so far; ``elapsed`` times two."""
        self._refuse_in_capture("an event (a timing mark)")
        return self._record_event()

    def elapsed(self, start, end):
        """Seconds the device took from mark ``start`` to mark ``end`` (waits for ``end``)."""
        self._refuse_in_capture("an event wait (elapsed)")
        return self._elapsed(start, end)

    def _synchronize(self):
        raise NotImplementedError

    def _record_event(self):
        raise NotImplementedError

    def _elapsed(self, start, end):
        raise NotImplementedError

    def _begin_capture(self):
        raise NotImplementedError

    def _end_capture(self):
        raise NotImplementedError

    def _abandon_capture(self):
        raise NotImplementedError

    def _replay(self, handle):
        raise NotImplementedError

    def _destroy_graph(self, handle):
        raise NotImplementedError

    def describe(self):
        """One line naming the device (for logs and ``confnet device-query``)."""
        return self.name


def kernel_dir():
    """The folder holding the ``.cu`` files: ``cuda/`` of a source checkout, or the copy shipped
    inside the package (``confnet/cuda``) in an installed wheel. ``CONFNET_CUDA_DIR`` overrides."""
    override = os.environ.get("CONFNET_CUDA_DIR")
    if override:
        return override
    shipped = resources.files("confnet") / "cuda"
    if shipped.is_dir():
        return str(shipped)
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "cuda")
    if os.path.isdir(checkout):
        return checkout
    raise ConfnetError("the CUDA kernel files (cuda/*.cu) are missing from this installation")


def kernel_path(cu_file):
    path = os.path.join(kernel_dir(), cu_file)
    if not os.path.isfile(path):
        raise ConfnetError(f"kernel file {cu_file} not found in {kernel_dir()}")
    return path
