"""Blob: the n-dimensional array that flows between layers.

A Blob holds two arrays of the same shape: ``data`` (values) and ``diff`` (gradient of the loss
with respect to those values). Each is a ``SyncedArray``: a host copy (numpy) and, once device
code asks for it, a device copy on the backend in use (``confnet.gpu``), with a *head* saying
which side is newer. Reading a side copies only when the other side is newer; writing makes the
writer's side the head. This is Caffe's SyncedMemory, and it is why CPU layers and device layers
mix freely in one net: each asks for the side it computes on.

Accessors (Caffe's names; the host ones are numpy views of the blob's shape):

    blob.data, blob.diff               host, for reading and writing (the host becomes the head)
    blob.cpu_data, blob.cpu_diff       host, read-only views
    blob.gpu_data, blob.gpu_diff       device pointer, for reading
    blob.mutable_gpu_data / _diff      device pointer, for writing (the device becomes the head)

Net, Solver and the tools change blobs through the whole-blob methods (``set_data``,
``set_diff``, ``zero_diff``, ``scale_diff``, ``update``, ``sumsq_diff``, ...), which run on the
device while a backend is in use, so no stray host write forces a round trip.

Blobs are float32; the gradient checks in the tests build float64 blobs through ``dtype`` (those
stay on the host). Sharing is explicit and never copies: ``share_data``/``share_diff`` make this
blob use another blob's storage (Split, Flatten, Reshape and parameter sharing use it); in-place
layers simply get the same Blob object as bottom and top. ``reshape`` keeps the storage when the
new shape fits in it, as Caffe does, so a batch that shrinks and grows again never reallocates.
``use_storage`` puts a blob into given SyncedArrays (a TEST net's memory plan shares them among
blobs whose lifetimes do not overlap); the head then belongs to the storage, so the lazy host and
device copies follow whichever blob wrote last.
"""

import numbers

import numpy as np

from . import gpu
from .errors import ConfnetError

_UNINIT, _HOST, _DEVICE, _SYNCED = "uninitialized", "host", "device", "synced"


class SyncedArray:
    """``capacity`` elements on the host and (lazily) on a device, with a head.

    The host array is allocated zeroed at creation (the OS maps such pages lazily, so a device-
    only blob costs no host memory until it is read). Until either side is written the head is
    "uninitialized": the device side then starts with a memset instead of a copy of zeros.
    """

    __slots__ = ("_backend", "_ptr", "capacity", "dtype", "head", "host")

    def __init__(self, capacity, dtype):
        self._ptr = self._backend = None   # first: __del__ runs even if the next line fails
        self.dtype = np.dtype(dtype)
        self.capacity = int(capacity)
        self.host = np.zeros(self.capacity, self.dtype)
        self.head = _UNINIT

    # -- host side -------------------------------------------------------------------------------
    def to_host(self):
        if self.head == _DEVICE:
            self._backend.dtoh(self.host, self._ptr)
            self.head = _SYNCED

    def host_for_write(self):
        if self.head != _HOST:
            self.to_host()
            self.head = _HOST
        return self.host

    # -- device side -----------------------------------------------------------------------------
    def device(self):
        """The device pointer with current contents (copying host -> device if the host is newer)."""
        if self._ptr is None:
            self._allocate()
        if self.head == _HOST:
            self._backend.htod(self._ptr, self.host)
            self.head = _SYNCED
        elif self.head == _UNINIT:
            self._backend.memset_d32(self._ptr, 0, self.capacity)
            self.head = _DEVICE
        return self._ptr

    def device_for_write(self):
        ptr = self.device()
        self.head = _DEVICE
        return ptr

    def device_for_overwrite(self):
        """The device pointer for a write that replaces every element: no copy of old contents."""
        if self._ptr is None:
            self._allocate()
        self.head = _DEVICE
        return self._ptr

    def _allocate(self):
        backend = gpu.current()
        if backend is None:
            raise ConfnetError("device memory was asked for, but no device is in use")
        if self.dtype.itemsize != 4:
            raise ConfnetError(f"device blobs are 32-bit; this one is {self.dtype}")
        self._backend = backend
        self._ptr = backend.alloc(max(self.capacity, 1) * 4)

    def __del__(self):
        if self._ptr is not None and self._backend is not None:
            try:
                self._backend.free(self._ptr)
            except Exception:   # interpreter shutdown: the pool may be gone already
                pass


class Blob:
    def __init__(self, shape=(), dtype=np.float32, name=""):
        self.name = name
        self.dtype = np.dtype(dtype)
        self._shape = ()
        self._data = self._diff = None
        self.reshape(shape)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        return self._count

    @property
    def num_axes(self):
        return len(self._shape)

    def canonical_axis(self, axis):
        """Map a possibly negative axis into [0, num_axes), as Caffe's CanonicalAxisIndex."""
        n = self.num_axes
        if not -n <= axis < max(n, 1):
            raise ConfnetError(f"axis {axis} out of range for a blob of shape {self.shape}")
        return axis % n if n else 0

    def count_range(self, start, end=None):
        """Product of the dimensions in [start, end)."""
        return int(np.prod(self.shape[start:end], dtype=np.int64))

    def reshape(self, *shape):
        """Give the blob a new shape, as a tuple or as pycaffe's reshape(n, c, h, w). The storage
        is kept when the new shape fits in it (values are then left as they are), else new zeroed
        storage is allocated."""
        shape = tuple(int(d) for d in _dims(shape))
        if any(d < 0 for d in shape):
            raise ConfnetError(f"blob '{self.name}': negative dimension in shape {shape}")
        if shape == self._shape and self._data is not None:
            return
        count = int(np.prod(shape, dtype=np.int64))
        if self._data is None or count > self._data.capacity:
            self._data = SyncedArray(count, self.dtype)
        if self._diff is None or count > self._diff.capacity:
            self._diff = SyncedArray(count, self.dtype)
        self._shape, self._count = shape, count
        self._views()

    def reshape_like(self, other):
        self.reshape(other.shape)

    def _views(self):
        self._data_view = self._data.host[:self._count].reshape(self._shape)
        self._diff_view = self._diff.host[:self._count].reshape(self._shape)

    # pycaffe's legacy 4-D accessors: axes a blob does not have count as 1.
    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def _legacy(self, axis):
        return self.shape[axis] if axis < self.num_axes else 1

    # -- host accessors ------------------------------------------------------------------------
    @property
    def data(self):
        """The values on the host, for reading and writing."""
        self._data.host_for_write()
        return self._data_view

    @data.setter
    def data(self, value):
        self.set_data(value)

    @property
    def diff(self):
        self._diff.host_for_write()
        return self._diff_view

    @diff.setter
    def diff(self, value):
        self.set_diff(value)

    @property
    def cpu_data(self):
        """The values on the host, read-only (no change of head)."""
        self._data.to_host()
        return _read_only(self._data_view)

    @property
    def cpu_diff(self):
        self._diff.to_host()
        return _read_only(self._diff_view)

    # -- device accessors ----------------------------------------------------------------------
    @property
    def gpu_data(self):
        return self._data.device()

    @property
    def gpu_diff(self):
        return self._diff.device()

    @property
    def mutable_gpu_data(self):
        return self._data.device_for_write()

    @property
    def mutable_gpu_diff(self):
        return self._diff.device_for_write()

    @property
    def on_device(self):
        """Whether whole-blob operations run on the device (a backend is in use and the blob is
        32-bit floats)."""
        return gpu.current() is not None and self.dtype == np.float32

    # -- whole-blob operations -----------------------------------------------------------------
    def set_data(self, value):
        """Fill with a scalar or copy an array of the blob's size (one host->device copy when on
        the device)."""
        _assign(self, self._data, "_data_view", value)

    def set_diff(self, value):
        _assign(self, self._diff, "_diff_view", value)

    def zero_diff(self):
        self.set_diff(0)

    def scale_diff(self, alpha):
        if self.on_device:
            _blas().scale(self._count, np.float32(alpha), self.mutable_gpu_diff)
        else:
            self.diff[...] *= alpha

    def add_to_diff(self, alpha, source="data"):
        """diff += alpha * data (``source="data"``), the L2 decay; or alpha * sign(data)."""
        if self.on_device:
            blas = _blas()
            if source == "data":
                blas.axpy(self._count, np.float32(alpha), self.gpu_data, self.mutable_gpu_diff)
            else:
                blas.add_sign(self._count, np.float32(alpha), self.gpu_data,
                              self.mutable_gpu_diff)
        else:
            x = self.cpu_data
            self.diff[...] += alpha * (x if source == "data" else np.sign(x))

    def update(self):
        """data -= diff (Caffe's Blob::Update)."""
        if self.on_device:
            _blas().axpy(self._count, np.float32(-1), self.gpu_diff, self.mutable_gpu_data)
        else:
            self.data[...] -= self.cpu_diff

    def sumsq_diff(self):
        """sum(diff ** 2), a float (one scalar copied back from the device)."""
        return self._reduce("sumsq", self._diff, self._diff_view)

    def asum_data(self):
        return self._reduce("asum", self._data, self._data_view)

    def _reduce(self, op, synced, view):
        if self.on_device:
            return _device_scalar(op, self._count, synced.device())
        synced.to_host()
        x = view.astype(np.float64, copy=False)
        return float(np.vdot(x, x)) if op == "sumsq" else float(np.abs(x).sum())

    def copy_from(self, other, diff=False):
        """This blob's data (or diff) becomes a copy of ``other``'s; the shapes must match."""
        if other.count != self.count:
            raise ConfnetError(f"blob '{self.name}': cannot copy {other.shape} into {self.shape}")
        if self.on_device:
            src = other.gpu_diff if diff else other.gpu_data
            dst = self._diff.device_for_write() if diff else self._data.device_for_write()
            gpu.current().dtod(dst, src, self._count * 4)
        elif diff:
            self.diff[...] = other.cpu_diff.reshape(self.shape)
        else:
            self.data[...] = other.cpu_data.reshape(self.shape)

    # -- sharing -------------------------------------------------------------------------------
    def share_data(self, other, shape=None):
        """Use ``other``'s data storage (viewed with ``shape`` if given); no copy."""
        self._share(other, shape, "_data")

    def share_diff(self, other, shape=None):
        self._share(other, shape, "_diff")

    def _share(self, other, shape, side):
        shape = tuple(shape) if shape is not None else other.shape
        count = int(np.prod(shape, dtype=np.int64))
        if count != other.count:
            raise ConfnetError(f"blob '{self.name}': cannot view {other.shape} as {shape}")
        self._shape, self._count = shape, count
        setattr(self, side, getattr(other, side))
        for mine in ("_data", "_diff"):   # the side not shared must still fit the new shape
            if getattr(self, mine).capacity < count:
                setattr(self, mine, SyncedArray(count, self.dtype))
        self._views()

    @property
    def storage(self):
        """The SyncedArray holding the data: blobs that share data have the same one."""
        return self._data

    def use_storage(self, data, diff):
        """Keep data and diff in the given SyncedArrays from now on (a net's memory plan, see
        ``confnet/memory_plan.py``, gives blobs that are never alive together the same ones).
        Each must hold at least ``count`` elements; their contents are whatever another blob
        left there, so the next writer must write every element."""
        for synced in (data, diff):
            if synced.capacity < self._count or synced.dtype != self.dtype:
                raise ConfnetError(f"blob '{self.name}' ({self._count} x {self.dtype}) does not "
                                   f"fit a storage of {synced.capacity} x {synced.dtype}")
        self._data, self._diff = data, diff
        self._views()

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self.shape})"


def _assign(blob, synced, view_name, value):
    if blob.on_device:
        ptr = synced.device_for_overwrite()
        if np.ndim(value) == 0:
            bits = np.array(value, np.float32).view(np.uint32)
            gpu.current().memset_d32(ptr, int(bits), blob.count)
        else:
            array = np.ascontiguousarray(np.broadcast_to(value, blob.shape), np.float32)
            gpu.current().htod(ptr, array)
        return
    synced.host_for_write()
    getattr(blob, view_name)[...] = value


def _read_only(view):
    out = view.view()
    out.flags.writeable = False
    return out


def _blas():
    from .gpu import blas
    return blas


def _device_scalar(op, count, ptr):
    """Reduce on the device into a one-element scratch array and copy that float back."""
    backend = gpu.current()
    out = backend.alloc(4)
    try:
        getattr(_blas(), op)(count, ptr, out)
        value = np.zeros(1, np.float32)
        backend.dtoh(value, out)
    finally:
        backend.free(out)
    return float(value[0])


def _dims(shape):
    """(4, 3) from reshape((4, 3)) or reshape(4, 3)."""
    if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
        return tuple(shape[0])
    return shape
