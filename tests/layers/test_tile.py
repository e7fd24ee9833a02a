import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from tests.layers.harness import DEVICES, RNG, check_layer, check_layer_gpu, make_layer


def reference_tile(x, axis, tiles):
    """Caffe's loop: for each outer index, the block x[outer, axis..] written tiles times."""
    outer = int(np.prod(x.shape[:axis]))
    blocks = x.reshape(outer, -1)
    y = np.concatenate([np.concatenate([blocks[i]] * tiles) for i in range(outer)])
    shape = list(x.shape)
    shape[axis] *= tiles
    return y.reshape(shape)


@pytest.mark.parametrize("fields, axis, tiles", [
    ("tiles: 3", 1, 3), ("axis: 0 tiles: 2", 0, 2), ("axis: -1 tiles: 4", 2, 4),
    ("axis: 2 tiles: 1", 2, 1),
])
def test_tile(fields, axis, tiles):
    x = RNG.normal(size=(2, 3, 2))
    want = reference_tile(x, axis, tiles)
    np.testing.assert_array_equal(want, np.tile(x, [tiles if a == axis else 1 for a in range(3)]))
    check_layer(f'type: "Tile" tile_param {{ {fields} }}', [x], [want])


@pytest.mark.parametrize("fields, message", [
    ("axis: 1", "tiles must be set"), ("tiles: 0", "tiles must be positive"),
    ("tiles: 2 axis: 3", "axis 3 out of range"),
])
def test_bad_settings_fail_clearly(fields, message):
    with pytest.raises(ConfnetError, match=message):
        make_layer(f'type: "Tile" tile_param {{ {fields} }}').setup([Blob((2, 3, 2))], [Blob()])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis, tiles", [(1, 3), (0, 2), (-1, 5), (2, 1)])
def test_gpu(device, axis, tiles):
    text = f'type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}'
    check_layer_gpu(text, [RNG.normal(size=(3, 5, 7))], device=device)
