"""The CUDA-on-CPU emulator: runs the unchanged ``cuda/*.cu`` kernels on the CPU, with g++.

How it works (DESIGN.md §5). For a ``.cu`` file, one C++20 translation unit is generated:
``confnet/gpu/emu/cuda_emu.h`` (CUDA's device vocabulary), the kernel file's text (only
``extern __shared__ T s[];`` is rewritten, since g++ has no dynamic shared memory), and an
``extern "C"`` launcher per ``extern "C" __global__`` kernel. g++ builds it into a shared library,
cached by a hash of everything that goes in, which is loaded with ctypes. A launch runs the blocks
one after the other; each CUDA thread is a fiber, and a barrier switches to the next fiber.

Usage::

    from confnet.gpu.emu import EmuBackend
    be = EmuBackend(order="random", seed=3)        # or CONFNET_EMU_ORDER=forward|reverse|random
    k = be.function("neuron.cu", "relu_forward")   # a name in cuda/, or any path to a .cu file
    x = be.alloc(n * 4); be.htod(x, host)          # device pointers are host addresses
    be.launch(k, (blocks, 1, 1), (256, 1, 1), [np.int32(n), x, y], shared=0)

What it catches: a missing ``__syncthreads`` (results differ between the thread orders forward,
reverse and random), a barrier or warp operation that not every thread reaches (a ``ConfnetError``
naming the kernel, block, threads and source lines), reads of uninitialized dynamic shared memory
(it is NaN at every block start), faults and ``__trap()`` (an error with block and thread).
Sanitizer builds: ``EmuBackend(sanitize="asan")`` (AddressSanitizer + UndefinedBehaviorSanitizer:
out-of-bounds and misaligned accesses, device buffers allocated at their exact size) and
``sanitize="tsan"`` (ThreadSanitizer: the race a missing barrier leaves). The sanitizer runtime must
be loaded first into the process: run Python through

    python -m confnet.gpu.emu --sanitize asan -- python -m pytest tests/gpu

or take ``sanitizer_env("asan")`` for a subprocess. Reports end with a line naming the kernel,
block and thread.

What it cannot run: inline PTX, cooperative groups and grid sync, half/bf16, exact GPU rounding
of ``__expf`` and friends. Kernels keep such fast paths behind ``#ifndef CONFNET_EMU``. WMMA covers
``m16n16k8`` TF32 with float accumulators; inputs are rounded to TF32 in ``mma_sync``.

Environment: ``CONFNET_EMU_ORDER`` (default thread order), ``CONFNET_EMU_SEED`` (random order
seed), ``CONFNET_EMU_CACHE`` (compiled kernels, default ``~/.cache/confnet/emu``), ``CXX``
(the compiler, default ``g++``).
"""

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from ..errors import ConfnetError
from .backend import Backend, kernel_path
from .launch import _dim3

HEADER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "emu")
HEADER = os.path.join(HEADER_DIR, "cuda_emu.h")
ORDERS = ("forward", "reverse", "random")
SANITIZERS = ("asan", "tsan")

_FLAGS = ["-std=c++20", "-shared", "-fPIC", "-fvisibility=hidden", "-fno-strict-aliasing",
          "-ffp-contract=off", "-Wno-unknown-pragmas", "-Wno-attributes"]
_MODE_FLAGS = {
    None: ["-O2"],
    # -fno-sanitize-recover: the first finding ends the process with its report (and our line
    # naming block and thread), instead of a stream of follow-on errors.
    "asan": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all"],
    "tsan": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=thread"],
}
_RUNTIME_LIBS = {"asan": ("libasan.so", "libubsan.so"), "tsan": ("libtsan.so",)}
_SANITIZER_OPTIONS = {
    # Python itself leaks by design and intercepts nothing we care about: keep only kernel errors.
    "ASAN_OPTIONS": "detect_leaks=0:detect_stack_use_after_return=0:"
                    "allocator_may_return_null=1:abort_on_error=0:exitcode=86",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    "TSAN_OPTIONS": "halt_on_error=1:exitcode=88:report_signal_unsafe=0",
}

_KERNEL_RE = re.compile(
    r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
    r'(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')
_DYN_SHARED_RE = re.compile(
    r'extern\s+__shared__\s+((?:(?:__align__|alignas)\s*\(\s*\w+\s*\)\s*)?)'
    r'([A-Za-z_][\w:]*(?:\s+[A-Za-z_][\w:]*)*?)\s+(\w+)\s*\[\s*\]\s*;')
# `__shared__ alignas(16) float t[..]` would read `static alignas(16) float`, which C++ refuses.
_SHARED_ALIGNAS_RE = re.compile(r'__shared__(\s+)(alignas\s*\([^()]*\))')
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)
_COMMENT_RE = re.compile(r'//[^\n]*|/\*.*?\*/', re.DOTALL)


# One launch at a time in the process: a library's runtime state and the fault handlers it
# installs during a launch are process-wide.
_LAUNCH_LOCK = threading.Lock()


class EmuKernelError(ConfnetError):
    """A kernel failed on the emulator: deadlock, fault, ``__trap``, misuse of a warp op."""


class _LaunchSpec(ctypes.Structure):
    """Mirror of ``cuemu::LaunchSpec`` in cuda_emu.h."""
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3),
                ("shared", ctypes.c_uint64), ("order", ctypes.c_int), ("pad", ctypes.c_int),
                ("seed", ctypes.c_uint64)]


_CTYPES = {"p": ctypes.c_void_p, "f": ctypes.c_float, "d": ctypes.c_double, "?": ctypes.c_bool,
           "b": ctypes.c_int8, "B": ctypes.c_uint8, "h": ctypes.c_int16, "H": ctypes.c_uint16,
           "i": ctypes.c_int32, "I": ctypes.c_uint32, "q": ctypes.c_int64, "Q": ctypes.c_uint64}


def compiler():
    """The C++ compiler the emulator uses (``$CXX`` or g++), or a ConfnetError saying it lacks."""
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise ConfnetError(f"the CUDA emulator needs a C++20 compiler: {cxx} is not on PATH "
                           "(install g++, or set CXX)")
    return path


def kernel_names(source):
    """The ``extern "C" __global__`` kernels defined in a .cu file's text, in order."""
    return _KERNEL_RE.findall(_COMMENT_RE.sub(" ", source))


def translate(source):
    """The .cu text as g++ takes it, line for line: ``extern __shared__ T s[];`` (dynamic shared
    memory) becomes a constant pointer to the emulator's per-block buffer, and ``__shared__
    alignas(n)`` becomes ``alignas(n) __shared__``."""
    def dyn(m):
        align, typ, name = m.group(1), m.group(2), m.group(3)
        return (f"{typ}* const {name} = reinterpret_cast<{typ}*>(::cuemu::dynamic_shared);"
                + (f" /* {align.strip()} */" if align else ""))
    return _SHARED_ALIGNAS_RE.sub(r"\2\1__shared__", _DYN_SHARED_RE.sub(dyn, source))


def generate(path, source):
    """The translation unit for the .cu file at ``path``: header, translated text, launchers."""
    names = kernel_names(source)
    if not names:
        raise ConfnetError(f'{path}: no extern "C" __global__ kernel found')
    lines = ['#include "cuda_emu.h"', f'#line 1 "{path}"', translate(source), "",
             "// ---- launchers generated by confnet/gpu/emu.py ----"]
    for name in names:
        lines += [
            f"static void cuemu_body_{name}(void** a) {{ ::cuemu::invoke(&{name}, a); }}",
            (f'extern "C" __attribute__((visibility("default"))) int cuemu_launch_{name}('
             f"const ::cuemu::LaunchSpec* s, void** a) {{"),
            f'    return ::cuemu::launch(s, "{name}", &cuemu_body_{name}, a);',
            "}",
            f'extern "C" __attribute__((visibility("default"))) const char* cuemu_sig_{name}() {{',
            f"    return ::cuemu::signature(&{name});",
            "}",
        ]
    return "\n".join(lines) + "\n", names


def _included_files(path, source, seen=None):
    """The quoted includes of a .cu file, recursively (they are part of the cache key)."""
    seen = set() if seen is None else seen
    for inc in _INCLUDE_RE.findall(source):
        full = os.path.normpath(os.path.join(os.path.dirname(path), inc))
        if full in seen or not os.path.isfile(full):
            continue
        seen.add(full)
        with open(full, encoding="utf-8") as f:
            _included_files(full, f.read(), seen)
    return sorted(seen)


@functools.cache
def _compiler_version(cxx):
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else cxx


def cache_dir():
    return os.environ.get("CONFNET_EMU_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "confnet", "emu")


def build(path, sanitize=None, verbose=False):
    """Compile the .cu file at ``path`` (cached) and return ``(library path, kernel names)``.

    The cache key hashes the generated unit, the emulator headers, every quoted include, the
    flags and the compiler version, so any change rebuilds. Two processes building at once each
    write a temporary file and rename it into place, which is atomic.
    """
    cxx = compiler()
    with open(path, encoding="utf-8") as f:
        source = f.read()
    unit, names = generate(path, source)
    flags = _FLAGS + _MODE_FLAGS[sanitize] + ["-I", HEADER_DIR, "-I", os.path.join(
        HEADER_DIR, "include"), "-I", os.path.dirname(path)]
    h = hashlib.sha256()
    for part in [unit, _compiler_version(cxx), " ".join(flags)]:
        h.update(part.encode())
    for dep in [HEADER] + _included_files(path, source):
        with open(dep, "rb") as f:
            h.update(f.read())
    stem = os.path.splitext(os.path.basename(path))[0]
    out_dir = cache_dir()
    lib = os.path.join(out_dir, f"{stem}-{h.hexdigest()[:20]}-{sanitize or 'plain'}.so")
    if os.path.exists(lib):
        return lib, names
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{stem}-", dir=out_dir)
    tmp, src = os.path.join(work, "kernel.so"), os.path.join(work, "kernel.cpp")
    try:
        with open(src, "w", encoding="utf-8") as f:
            f.write(unit)
        # Quoted includes resolve first beside kernel.cpp: put translated copies there.
        for dep in _included_files(path, source):
            rel = os.path.relpath(dep, os.path.dirname(path))
            if rel.startswith(".."):
                continue
            os.makedirs(os.path.dirname(os.path.join(work, rel)), exist_ok=True)
            with open(dep, encoding="utf-8") as f, \
                    open(os.path.join(work, rel), "w", encoding="utf-8") as out:
                out.write(f'#line 1 "{dep}"\n' + translate(f.read()))
        cmd = [cxx] + flags + ["-o", tmp, src]
        if verbose:
            print(" ".join(cmd), file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            errors = [ln for ln in done.stderr.splitlines() if ln.strip()][:40]
            raise ConfnetError(f"{path}: the emulator's g++ build failed:\n" + "\n".join(errors))
        os.replace(tmp, lib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lib, names


def runtime_library(kind):
    """Paths of the sanitizer runtime libraries for ``kind`` ("asan" or "tsan"), from g++."""
    cxx = compiler()
    paths = []
    for name in _RUNTIME_LIBS[kind]:
        out = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True,
                             check=False)
        found = os.path.realpath(out.stdout.strip())
        if not os.path.isfile(found):
            raise ConfnetError(f"{cxx} has no {name}: install the sanitizer runtime "
                               f"(e.g. the lib{kind} package of your compiler)")
        paths.append(found)
    return paths


def sanitizer_env(kind, env=None):
    """A copy of ``env`` (default: os.environ) for running a process under the sanitizer
    ``kind``: its runtime in LD_PRELOAD (it must be loaded before anything else) and options
    that keep Python's own behaviour (leaks, signal handlers) out of the reports."""
    if kind not in SANITIZERS:
        raise ConfnetError(f"sanitizer {kind!r}: choose one of {', '.join(SANITIZERS)}")
    env = dict(os.environ if env is None else env)
    preload = runtime_library(kind) + [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    env["LD_PRELOAD"] = ":".join(preload)
    for key, value in _SANITIZER_OPTIONS.items():
        env.setdefault(key, value)
    env["CONFNET_EMU_SANITIZE"] = kind
    return env


def _sanitizer_loaded(kind):
    lib = {"asan": "libasan", "tsan": "libtsan"}[kind]
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            return lib in f.read()
    except OSError:
        return False


class Kernel:
    """A compiled kernel: its name, ctypes parameter types and launcher."""

    def __init__(self, name, lib, source):
        self.name, self.source = name, source
        sig = getattr(lib, f"cuemu_sig_{name}")
        sig.restype = ctypes.c_char_p
        self.codes = sig().decode()
        if "x" in self.codes:
            raise ConfnetError(f"kernel {name} in {source}: a parameter passed by value as a "
                               "struct; the emulator takes pointers and scalars")
        self.types = [_CTYPES[c] for c in self.codes]
        self.entry = getattr(lib, f"cuemu_launch_{name}")
        self.entry.restype = ctypes.c_int
        self.entry.argtypes = [ctypes.POINTER(_LaunchSpec), ctypes.c_void_p]
        self.error = lib.cuemu_error
        self.error.restype = ctypes.c_char_p

    def __repr__(self):
        return f"<emu kernel {self.name}({self.codes}) from {self.source}>"


class EmuBackend(Backend):
    """The CUDA-on-CPU backend (see the module docstring).

    ``order``: the order threads of a block run between barriers: "forward", "reverse" or
    "random" (seeded by ``seed``); default ``$CONFNET_EMU_ORDER`` or forward.
    ``sanitize``: None, "asan" (ASan+UBSan) or "tsan"; needs the runtime preloaded
    (``sanitizer_env``). Default ``$CONFNET_EMU_SANITIZE``.
    """

    name = "emu"

    def __init__(self, order=None, seed=None, sanitize=None):
        order = order or os.environ.get("CONFNET_EMU_ORDER") or "forward"
        if order not in ORDERS:
            raise ConfnetError(f"emulator thread order {order!r}: choose one of "
                               f"{', '.join(ORDERS)}")
        sanitize = sanitize if sanitize is not None else os.environ.get("CONFNET_EMU_SANITIZE")
        sanitize = sanitize or None
        if sanitize is not None and sanitize not in SANITIZERS:
            raise ConfnetError(f"emulator sanitizer {sanitize!r}: choose one of "
                               f"{', '.join(SANITIZERS)}")
        if sanitize and not _sanitizer_loaded(sanitize):
            raise ConfnetError(f"the {sanitize} build of the emulator needs its runtime loaded "
                               f"first: run `python -m confnet.gpu.emu --sanitize {sanitize} -- "
                               "<command>` (or use confnet.gpu.emu.sanitizer_env)")
        self.order = order
        self.seed = int(seed if seed is not None else os.environ.get("CONFNET_EMU_SEED", "0"))
        self.sanitize = sanitize
        self._libc = ctypes.CDLL(None)
        self._libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                                              ctypes.c_size_t]
        self._libc.free.argtypes = [ctypes.c_void_p]
        self._libs = {}
        self._exact = {}                    # sanitize mode: live pointer -> exact size
        self._recording = None              # the work recorded while capturing
        super().__init__()

    # -- memory: "device" memory is 256-byte aligned host memory ------------------------------
    def _raw_alloc(self, nbytes):
        ptr = ctypes.c_void_p()
        if self._libc.posix_memalign(ctypes.byref(ptr), 256, max(int(nbytes), 1)) != 0:
            raise MemoryError(f"emulator: cannot allocate {nbytes} bytes")
        return ptr.value

    def _raw_free(self, ptr):
        self._libc.free(ptr)

    def alloc(self, nbytes):
        if self.sanitize:
            # Exact sizes, no pool: ASan's redzone starts right after the last byte asked for.
            self._refuse_in_capture(f"an allocation of {int(nbytes)} bytes (sanitizer build)")
            ptr = self._raw_alloc(nbytes)
            self._exact[ptr] = int(nbytes)
            return ptr
        return super().alloc(nbytes)

    def free(self, ptr):
        if self.sanitize and not self.capturing:
            self._exact.pop(ptr)
            self._raw_free(ptr)
            return
        super().free(ptr)

    def _htod(self, ptr, array):
        array = np.ascontiguousarray(array)
        ctypes.memmove(ptr, array.ctypes.data, array.nbytes)

    def _dtoh(self, array, ptr):
        if not array.flags.c_contiguous:
            raise ConfnetError("dtoh needs a C-contiguous host array")
        ctypes.memmove(array.ctypes.data, ptr, array.nbytes)

    def dtod(self, dst, src, nbytes):
        self._queue(ctypes.memmove, int(dst), int(src), int(nbytes))

    def memset_d32(self, ptr, bits, count):
        if count > 0:
            self._queue(_fill_words, int(ptr), int(bits) & 0xFFFFFFFF, int(count))

    # -- kernels ---------------------------------------------------------------------------------
    def _load(self, cu_file, name):
        # A bare name is a file of cuda/; a path (tests, kernel development) is taken as is.
        path = os.path.abspath(cu_file) if os.sep in cu_file else kernel_path(cu_file)
        if not os.path.isfile(path):
            raise ConfnetError(f"kernel file {cu_file} not found")
        if path not in self._libs:
            lib_path, names = build(path, self.sanitize)
            self._libs[path] = (ctypes.CDLL(lib_path), names)
        lib, names = self._libs[path]
        if name not in names:
            raise ConfnetError(f"kernel {name} not found in {cu_file}; it defines "
                               f"{', '.join(names)}")
        return Kernel(name, lib, cu_file)

    def launch(self, kernel, grid, block, args, shared=0):
        """Run ``kernel`` over ``grid`` x ``block`` (3-tuples or ints); ``args`` are device
        pointers (ints) and scalars, converted to the kernel's parameter types. While capturing,
        the launch is recorded, with its converted argument values, instead of run."""
        grid, block = _dim3(grid), _dim3(block)
        args = list(args)
        if len(args) != len(kernel.types):
            raise ConfnetError(f"kernel {kernel.name} takes {len(kernel.types)} arguments, "
                               f"got {len(args)}")
        values = []
        for i, (ctype, arg) in enumerate(zip(kernel.types, args)):
            try:
                if ctype is ctypes.c_void_p:
                    values.append(ctype(int(arg)))
                elif ctype in (ctypes.c_float, ctypes.c_double):
                    values.append(ctype(float(arg)))
                else:
                    values.append(ctype(int(arg)))
            except (TypeError, ValueError) as e:
                raise ConfnetError(f"kernel {kernel.name}: argument {i} ({arg!r}): {e}") from None
        self._queue(self._run, kernel, grid, block, tuple(values), int(shared))

    def _run(self, kernel, grid, block, values, shared):
        argv = (ctypes.c_void_p * max(len(values), 1))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        spec = _LaunchSpec((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block),
                           shared, ORDERS.index(self.order), 0, self.seed & (2 ** 64 - 1))
        with _LAUNCH_LOCK:
            rc = kernel.entry(ctypes.byref(spec), argv)
            if rc != 0:
                raise EmuKernelError(kernel.error().decode(errors="replace"))

    # -- graphs: a recording of the queued work, run again in order --------------------------------
    def _queue(self, work, *args):
        """Run ``work(*args)`` now, or record it while capturing (the emulator's stream)."""
        if self._recording is not None:
            self._recording.append((work, args))
        else:
            work(*args)

    def _begin_capture(self):
        self._recording = []

    def _end_capture(self):
        recording, self._recording = self._recording, None
        return recording

    def _abandon_capture(self):
        self._recording = None

    def _replay(self, recording):
        for work, args in recording:
            work(*args)

    def _destroy_graph(self, recording):
        recording.clear()

    def _synchronize(self):
        pass   # every kernel has run to completion inside ``launch``

    def _record_event(self):
        """Host time: the emulator runs each kernel to completion inside ``launch``."""
        return time.perf_counter()

    def _elapsed(self, start, end):
        return end - start

    def describe(self):
        extra = f", {self.sanitize}" if self.sanitize else ""
        return f"CUDA emulator on the CPU ({self.order} thread order{extra})"


def _fill_words(ptr, bits, count):
    words = np.ctypeslib.as_array((ctypes.c_uint32 * count).from_address(ptr))
    words[:] = np.uint32(bits)


def main(argv=None):
    """``python -m confnet.gpu.emu --sanitize asan|tsan -- <command...>``: run the command with
    the sanitizer runtime preloaded, so emulator backends created in it may use that build."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m confnet.gpu.emu", description=main.__doc__)
    parser.add_argument("--sanitize", choices=SANITIZERS, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        parser.error("give the command to run after --")
    try:
        env = sanitizer_env(opts.sanitize)
    except ConfnetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
