"""Where a net runs: the CPU (no backend) or a device backend (``backend.py``).

The choice is process-wide, as Caffe's mode is: ``use(None)`` for the CPU, ``use(0)`` for GPU 0
through pycuda, ``use("emu")`` for the CUDA-on-CPU emulator. Blobs allocate device memory on
``current()`` and layers dispatch to their ``*_gpu`` methods while a backend is in use.

Importing this module imports neither pycuda nor a compiler: the backends load on ``use``.
"""

from ..errors import ConfnetError

_current = None
_backends = {}


def current():
    """The backend in use, or None when running on the CPU."""
    return _current


def get(device):
    """The backend for ``device`` ("emu", an int GPU id, or a string of one), created once."""
    key = _parse(device)
    if key not in _backends:
        if key == "emu":
            from .emu import EmuBackend
            _backends[key] = EmuBackend()
        else:
            from .pycuda_backend import PyCudaBackend
            _backends[key] = PyCudaBackend(key)
    return _backends[key]


def use(device):
    """Run on ``device`` from now on (None: the CPU); returns the backend (or None)."""
    global _current
    _current = None if device is None else get(device)
    return _current


def _parse(device):
    if isinstance(device, str):
        text = device.strip().lower()
        if text == "emu":
            return "emu"
        if not text.isdigit():
            raise ConfnetError(f"--gpu {device!r}: give a GPU id (0, 1, ...) or 'emu' for the "
                               "CUDA-on-CPU emulator")
        return int(text)
    if isinstance(device, int) and device >= 0:
        return device
    raise ConfnetError(f"device {device!r}: give a GPU id (0, 1, ...) or 'emu'")
