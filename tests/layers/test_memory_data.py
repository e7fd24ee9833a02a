"""MemoryData layer: consecutive batches of arrays handed over with reset(data, labels)."""

import contextlib

import numpy as np
import pytest

from confnet import rng
from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, device_backend, make_layer, running_on


def check_data_gpu(device, build, batches=3, copies=None):
    """``build()`` returns a float32 data layer, set up, and its tops. Run ``batches`` forwards
    on the host, then (built again from the same seed) on the device: every device top equals
    the host one, and each device forward copies each top (or ``copies`` of them) host -> device
    exactly once and nothing back."""
    backend = device_backend(device)
    runs = []
    for side in (None, device):
        with running_on(side) if side is not None else contextlib.nullcontext():
            rng.seed(0)
            layer, top = build()
            assert layer.on_device() == (side is not None)
            run = []
            for i in range(batches):
                backend.copies.reset()
                layer.forward([], top)
                if side is not None:
                    want = copies if copies is not None else len(top)
                    assert (backend.copies.htod, backend.copies.dtoh) == (want, 0), (
                        f"batch {i}: {backend.copies}")
                run.append([t.cpu_data.copy() for t in top])
        runs.append(run)
    for i, (want, got) in enumerate(zip(*runs)):
        for j, (w, g) in enumerate(zip(want, got)):
            np.testing.assert_array_equal(g, w, err_msg=f"batch {i}, top {j}")
    return runs[1]


def memory_layer(batch=2, dtype=np.float64):
    layer = make_layer('type: "MemoryData" top: "data" top: "label" memory_data_param { '
                       f'batch_size: {batch} channels: 2 height: 3 width: 1 }}', dtype=dtype)
    top = [Blob((), dtype), Blob((), dtype)]
    layer.setup([], top)
    return layer, top


def test_batches_are_consecutive_and_cycle():
    layer, top = memory_layer()
    assert top[0].shape == (2, 2, 3, 1) and top[1].shape == (2,)
    data = np.random.default_rng(0).normal(size=(6, 2, 3, 1))
    labels = np.arange(6.0)
    layer.reset(data, labels)
    for start in [0, 2, 4, 0, 2]:
        layer.forward([], top)
        np.testing.assert_array_equal(top[0].data, data[start:start + 2])
        np.testing.assert_array_equal(top[1].data, labels[start:start + 2])
    layer.reset(data[:2], labels[:2, None, None, None])  # pycaffe's 4-d labels; starts over
    layer.forward([], top)
    np.testing.assert_array_equal(top[1].data, [0, 1])


def test_clear_errors():
    layer, top = memory_layer()
    with pytest.raises(ConfnetError, match="call reset"):
        layer.forward([], top)
    with pytest.raises(ConfnetError, match="multiple of batch_size"):
        layer.reset(np.zeros((3, 2, 3, 1)), np.zeros(3))
    with pytest.raises(ConfnetError, match=r"must be \(N, 2, 3, 1\)"):
        layer.reset(np.zeros((2, 3, 2, 1)), np.zeros(2))
    with pytest.raises(ConfnetError, match="labels must be"):
        layer.reset(np.zeros((2, 2, 3, 1)), np.zeros(4))
    with pytest.raises(ConfnetError, match="all positive"):
        make_layer('type: "MemoryData" top: "d" top: "l" memory_data_param { batch_size: 1 }'
                   ).setup([], [Blob(), Blob()])
    with pytest.raises(ConfnetError, match="transform_param"):
        make_layer('type: "MemoryData" top: "d" top: "l" transform_param { scale: 2 } '
                   'memory_data_param { batch_size: 1 channels: 1 height: 1 width: 1 }')


@pytest.mark.parametrize("device", DEVICES)
def test_gpu(device):
    data = np.random.default_rng(0).normal(size=(9, 2, 3, 1))

    def build():
        layer, top = memory_layer(3, np.float32)
        layer.reset(data, np.arange(9.0))
        return layer, top

    batches = check_data_gpu(device, build, batches=4)
    np.testing.assert_array_equal(batches[3][1], [0, 1, 2])   # around the end, as on the host
