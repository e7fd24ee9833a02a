"""MemoryData layer: consecutive batches of arrays handed over with reset(data, labels)."""

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import make_layer


def memory_layer(batch=2):
    layer = make_layer('type: "MemoryData" top: "data" top: "label" memory_data_param { '
                       f'batch_size: {batch} channels: 2 height: 3 width: 1 }}')
    top = [Blob((), np.float64), Blob((), np.float64)]
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
