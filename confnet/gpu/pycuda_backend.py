"""The real device: an NVIDIA GPU through pycuda (the ``cuda`` extra).

Everything confnet asks of the device goes through one stream of its own, so the copies, memsets
and kernels of an iteration queue up without host waits; the host waits only when it reads
(``dtoh``), synchronizes, or times with events (``confnet time``). The one exception is the
input batch (``upload_async``): it is copied from page-locked memory on a second stream, which
the compute stream waits for through an event, so the next batch's copy overlaps the kernels
still running. Kernels are compiled from ``cuda/*.cu`` with nvcc
for the device's own architecture on first use (pycuda caches the cubins).

pycuda launches take their arguments untyped, so the parameter types of every kernel are read
from its ``extern "C" __global__`` signature in the .cu text (``kernel_signature``) and each
launch is a prepared call with that format: an ``int`` parameter never receives a 64-bit pointer
by mistake. A CPU test checks these formats against the types the emulator's compiler sees.

Graphs: the stream is captured with the driver's stream-capture API through ctypes
(``graph.DriverGraphs``, on ``stream.handle``); a graph is instantiated when its capture ends
and launched on the stream at each replay.

Without pycuda, without the NVIDIA driver, or without the device asked for, creating the
backend raises one ConfnetError that says which and what to do.
"""

import re

import numpy as np

from ..errors import ConfnetError
from .backend import Backend, kernel_dir, kernel_path

# struct-module codes of scalar parameter types, as pycuda's prepare() takes them
_SCALARS = {
    "float": "f", "double": "d", "bool": "?", "char": "b", "signed char": "b",
    "unsigned char": "B", "short": "h", "unsigned short": "H", "int": "i", "signed": "i",
    "signed int": "i", "unsigned": "I", "unsigned int": "I", "long": "q", "long long": "q",
    "unsigned long": "Q", "unsigned long long": "Q", "size_t": "Q", "int32_t": "i",
    "uint32_t": "I", "int64_t": "q", "uint64_t": "Q",
}
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?'
                     r"void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)")
_QUALIFIERS = re.compile(r"\b(const|volatile|__restrict__|__restrict|restrict)\b")


def kernel_signature(source, name):
    """The pycuda prepare() format of kernel ``name`` in .cu text ``source``: "P" per pointer,
    a struct code per scalar ("i", "f", ...)."""
    for found, params in _KERNEL.findall(_COMMENTS.sub(" ", source)):
        if found == name:
            return "".join(_param_code(p, name) for p in params.split(",") if p.strip())
    raise ConfnetError(f'kernel {name}: no extern "C" __global__ definition found')


def _param_code(param, kernel):
    if "*" in param or "[" in param:
        return "P"
    words = _QUALIFIERS.sub(" ", param).split()
    type_name = " ".join(words[:-1])
    if type_name not in _SCALARS:
        raise ConfnetError(f"kernel {kernel}: parameter '{param.strip()}' has a type the "
                           "launcher cannot pass (use pointers and int/unsigned/float scalars)")
    return _SCALARS[type_name]


class _Kernel:
    def __init__(self, function, name, codes):
        self.function, self.name, self.codes = function, name, codes
        function.prepare(codes)


class PyCudaBackend(Backend):
    """GPU ``device_id`` through pycuda, on its primary context and one confnet stream."""

    name = "cuda"

    def __init__(self, device_id=0):
        drv = _import_driver()
        try:
            drv.init()
            count = drv.Device.count()
        except drv.Error as error:
            raise ConfnetError(f"--gpu {device_id}: the NVIDIA driver could not start ({error}); "
                               "check `nvidia-smi`, or use --gpu emu to run the kernels on the "
                               "CPU emulator") from None
        if not 0 <= device_id < count:
            raise ConfnetError(f"--gpu {device_id}: no such GPU ({count} found"
                               f"{': ids 0-' + str(count - 1) if count else ''})")
        self.drv = drv
        self.device_id = device_id
        self.device = drv.Device(device_id)
        self.context = self.device.retain_primary_context()
        self.context.push()
        self.stream = drv.Stream()
        self.copy_stream = drv.Stream()   # upload_async's copies, beside the compute stream
        self._staging = {}                # device pointer -> (page-locked buffer, copy event)
        self._allocations = {}
        self._modules = {}
        self._graph_api = None            # graph.DriverGraphs, loaded at the first capture
        major, minor = self.device.compute_capability()
        self.arch = f"sm_{major}{minor}"
        super().__init__()

    # -- memory ----------------------------------------------------------------------------------
    def _raw_alloc(self, nbytes):
        try:
            allocation = self.drv.mem_alloc(nbytes)
        except self.drv.MemoryError:
            raise MemoryError(f"GPU {self.device_id}: out of memory allocating {nbytes} bytes "
                              f"({self.pool.held} bytes held by confnet)") from None
        ptr = int(allocation)
        self._allocations[ptr] = allocation
        return ptr

    def _raw_free(self, ptr):
        self._allocations.pop(ptr).free()

    def _htod(self, ptr, array):
        self.drv.memcpy_htod_async(ptr, np.ascontiguousarray(array), self.stream)

    def _dtoh(self, array, ptr):
        self.drv.memcpy_dtoh_async(array, ptr, self.stream)
        self.stream.synchronize()

    def dtod(self, dst, src, nbytes):
        self.drv.memcpy_dtod_async(dst, src, int(nbytes), self.stream)

    def upload_async(self, ptr, array, after=None):
        """See Backend.upload_async. The array is copied into a page-locked staging buffer kept
        for ``ptr`` (a DMA engine reads page-locked memory while kernels run; pageable memory
        would make the driver copy synchronously), the copy is queued on ``copy_stream`` behind
        ``after``, and the compute stream waits for it through an event. Before the host
        rewrites a staging buffer it waits for the previous copy out of it, normally finished
        long ago."""
        self._refuse_in_capture(f"a batch upload of {array.nbytes} bytes")
        array = np.ascontiguousarray(array)
        self.copies.htod += 1
        self.copies.htod_bytes += array.nbytes
        staging, copied = self._staging.get(ptr, (None, None))
        if staging is None or staging.nbytes < array.nbytes:
            staging, copied = self.drv.pagelocked_empty(array.nbytes, np.uint8), self.drv.Event()
            self._staging[ptr] = (staging, copied)
        else:
            copied.synchronize()
        host = staging[:array.nbytes]
        host[...] = array.reshape(-1).view(np.uint8)
        if after is not None:
            self.copy_stream.wait_for_event(after)
        self.drv.memcpy_htod_async(ptr, host, self.copy_stream)
        copied.record(self.copy_stream)
        self.stream.wait_for_event(copied)

    def memset_d32(self, ptr, bits, count):
        if count > 0:
            self.drv.memset_d32_async(ptr, int(bits) & 0xFFFFFFFF, int(count), self.stream)

    # -- kernels ---------------------------------------------------------------------------------
    def _load(self, cu_file, name):
        path = kernel_path(cu_file)
        with open(path) as f:
            source = f.read()
        if path not in self._modules:
            from pycuda.compiler import SourceModule
            self._modules[path] = SourceModule(
                source, no_extern_c=True, arch=self.arch, include_dirs=[kernel_dir()],
                options=["-std=c++17", "-lineinfo"])
        return _Kernel(self._modules[path].get_function(name), name,
                       kernel_signature(source, name))

    def launch(self, kernel, grid, block, args, shared=0):
        values = [np.uintp(a) if c == "P" else a for c, a in zip(kernel.codes, args)]
        if len(values) != len(kernel.codes) or len(args) != len(kernel.codes):
            raise ConfnetError(f"kernel {kernel.name} takes {len(kernel.codes)} arguments, "
                               f"got {len(args)}")
        kernel.function.prepared_async_call(tuple(grid[:2]) if grid[2] == 1 else tuple(grid),
                                            tuple(block), self.stream, *values,
                                            shared_size=int(shared))

    def _synchronize(self):
        self.stream.synchronize()

    def _record_event(self):
        event = self.drv.Event()
        event.record(self.stream)
        return event

    def _elapsed(self, start, end):
        end.synchronize()
        return end.time_since(start) / 1e3   # pycuda gives milliseconds

    # -- graphs ----------------------------------------------------------------------------------
    def _graphs(self):
        if self._graph_api is None:
            from .graph import DriverGraphs
            self._graph_api = DriverGraphs()
        return self._graph_api

    def _begin_capture(self):
        api = self._graphs()
        if api.is_capturing(self.stream.handle):
            raise ConfnetError("begin_capture: the confnet stream is already being captured")
        api.begin_capture(self.stream.handle)

    def _end_capture(self):
        """(executable graph, graph): instantiated once, launched at every replay."""
        api = self._graphs()
        graph = api.end_capture(self.stream.handle)
        try:
            return api.instantiate(graph), graph
        except ConfnetError:
            api.destroy(None, graph)
            raise

    def _abandon_capture(self):
        """End the capture and drop its graph; an invalidated capture (a refused call reached
        the driver) ends with an error, which is the expected outcome here."""
        api = self._graphs()
        try:
            graph = api.end_capture(self.stream.handle)
        except ConfnetError:
            graph = None
        if graph:
            api.destroy(None, graph)

    def _replay(self, handle):
        self._graphs().launch(handle[0], self.stream.handle)

    def _destroy_graph(self, handle):
        self._graphs().destroy(*handle)

    def describe(self):
        free, total = self.drv.mem_get_info()
        return (f"GPU {self.device_id}: {self.device.name()} ({self.arch}, "
                f"{self.device.get_attribute(self.drv.device_attribute.MULTIPROCESSOR_COUNT)} "
                f"SMs, {total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free)")


def _import_driver():
    try:
        import pycuda.driver as drv
    except ModuleNotFoundError:
        raise ConfnetError("GPU: pycuda is not installed; install the NVIDIA driver and CUDA "
                           "toolkit, then `pip install confnet[cuda]` (or use --gpu emu to run "
                           "the kernels on the CPU emulator)") from None
    except ImportError as error:
        raise ConfnetError(f"GPU: pycuda is installed but cannot load the NVIDIA driver "
                           f"({error}): this machine has no usable GPU driver (libcuda.so.1); "
                           "use --gpu emu to run the kernels on the CPU emulator") from None
    return drv
