"""The backend interface without a GPU: the caching pool, the synced memory of a Blob (which
copies only when the other side is newer), the launch arguments the pycuda backend derives from
the .cu text (checked against the types the emulator's compiler sees), and the one-line errors
of an unusable GPU."""

import glob
import importlib.util
import os
import shutil

import numpy as np
import pytest

from confnet import gpu
from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.gpu.backend import Pool, kernel_dir
from confnet.gpu.pycuda_backend import kernel_signature

needs_cxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                               reason="the CUDA emulator needs g++")


def test_pool_rounds_and_reuses_blocks():
    raw = []
    pool = Pool(lambda n: raw.append(n) or 4096 * len(raw), lambda p: None)
    assert Pool.round_size(1) == 256 and Pool.round_size(257) == 512
    assert Pool.round_size(3 << 20) == 3 << 20          # 1/8-of-a-power-of-two steps above 1 MiB
    assert Pool.round_size((1 << 21) + 1) == (1 << 21) + (1 << 18)
    a = pool.alloc(1000)
    pool.free(a)
    b = pool.alloc(900)                                  # same rounded size: the cached block
    assert a == b and raw == [1024] and pool.peak == 1024


@pytest.fixture
def emu():
    yield gpu.use("emu")
    gpu.use(None)


@needs_cxx
def test_blob_copies_only_when_the_other_side_is_newer(emu):
    copies = emu.copies
    copies.reset()
    blob = Blob((3, 5))
    ptr = blob.gpu_data                       # never written: a memset, no copy
    assert (copies.htod, copies.dtoh) == (0, 0)
    assert not blob.cpu_data.any() and copies.dtoh == 1
    blob.data[...] = np.arange(15).reshape(3, 5)   # the host becomes the head
    assert blob.gpu_data == ptr and copies.htod == 1
    assert blob.gpu_data == ptr and copies.htod == 1   # synced: no second copy
    blob.scale_diff(2.0)
    blob.set_diff(np.ones((3, 5)))            # straight to the device: one copy
    assert copies.htod == 2
    blob.update()                             # data -= diff, on the device
    np.testing.assert_array_equal(blob.cpu_data, np.arange(15).reshape(3, 5) - 1)
    assert copies.dtoh == 2
    assert blob.sumsq_diff() == 15.0
    with pytest.raises(ValueError):
        blob.cpu_data[0, 0] = 1               # read-only view


@needs_cxx
def test_reshape_keeps_device_storage_when_shrinking(emu):
    blob = Blob((4, 6))
    ptr = blob.mutable_gpu_data
    blob.reshape((2, 6))
    assert blob.gpu_data == ptr and blob.count == 12
    blob.reshape((5, 6))
    assert blob.count == 30 and blob.cpu_data.shape == (5, 6)


@needs_cxx
def test_pycuda_launch_formats_match_the_compiled_signatures(emu):
    """Every kernel in cuda/: the format the pycuda backend derives from the source text equals
    the parameter types g++ compiled (the emulator reads them from the kernel's type)."""
    from confnet.gpu.emu import kernel_names
    checked = 0
    for path in sorted(glob.glob(os.path.join(kernel_dir(), "*.cu"))):
        with open(path) as f:
            source = f.read()
        for name in kernel_names(source):
            compiled = emu.function(os.path.basename(path), name).codes.replace("p", "P")
            assert kernel_signature(source, name) == compiled, (path, name)
            checked += 1
    assert checked >= 20


@pytest.mark.skipif(importlib.util.find_spec("pycuda") is not None, reason="pycuda is installed")
def test_a_gpu_without_pycuda_is_one_clear_error():
    with pytest.raises(ConfnetError, match="pycuda is not installed.*--gpu emu"):
        gpu.use(0)
    assert gpu.current() is None


def test_device_names_are_checked():
    with pytest.raises(ConfnetError, match="give a GPU id"):
        gpu.use("gpu0")
