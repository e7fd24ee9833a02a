"""HDF5Data layer: rows of HDF5 datasets, one top per dataset (skipped without h5py)."""

import sys

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.layers import TRAIN
from tests.layers.harness import DEVICES, make_layer
from tests.layers.test_memory_data import check_data_gpu

h5py = pytest.importorskip("h5py")


@pytest.fixture
def files(tmp_path):
    """Two files of 5 and 3 rows; row r of the whole set has data (2, 3) filled with r and label
    r (integers in the file, as they often are)."""
    names = []
    for k, rows in enumerate([range(5), range(5, 8)]):
        path = tmp_path / f"part{k}.h5"
        with h5py.File(path, "w") as f:
            f["data"] = np.array([np.full((2, 3), r) for r in rows], dtype=np.float32)
            f["label"] = np.array(list(rows), dtype=np.int32)
        names.append(str(path))
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    return tmp_path


def hdf5_layer(folder, params="", batch=3, tops=("data", "label"), dtype=np.float64):
    text = " ".join(f'top: "{t}"' for t in tops)
    layer = make_layer(f'type: "HDF5Data" {text} hdf5_data_param {{ '
                       f'source: "{folder}/list.txt" batch_size: {batch} {params} }}', TRAIN,
                       dtype=dtype)
    top = [Blob() for _ in tops]
    layer.setup([], top)
    return layer, top


def labels(layer, top, count):
    out = []
    for _ in range(count):
        layer.forward([], top)
        np.testing.assert_array_equal(top[0].data, top[1].data[:, None, None] * np.ones((2, 3)))
        out.append(top[1].data.astype(int).tolist())
    return out


def test_rows_in_file_order_across_files_and_around(files):
    layer, top = hdf5_layer(files)
    assert top[0].shape == (3, 2, 3) and top[1].shape == (3,)
    assert labels(layer, top, 4) == [[0, 1, 2], [3, 4, 5], [6, 7, 0], [1, 2, 3]]


def test_tops_are_named_like_the_datasets(files):
    layer, top = hdf5_layer(files, tops=("label",), batch=2)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, [0, 1])


def test_shuffle_visits_every_row_once_per_pass(files):
    layer, top = hdf5_layer(files, "shuffle: true", batch=4)
    passes = labels(layer, top, 6)
    for first in range(0, 6, 2):
        assert sorted(passes[first] + passes[first + 1]) == list(range(8))
    assert len({tuple(p) for p in passes}) > 2


def test_cursor_state_replays_shuffled_rows(files):
    layer, top = hdf5_layer(files, "shuffle: true", batch=3)
    labels(layer, top, 2)
    state = layer.cursor_state()
    expected = labels(layer, top, 5)
    labels(layer, top, 1)
    layer.restore_cursor(*state)
    assert labels(layer, top, 5) == expected


def test_clear_errors(files, monkeypatch):
    with pytest.raises(ConfnetError, match="no dataset 'target'"):
        hdf5_layer(files, tops=("data", "target"))
    with pytest.raises(ConfnetError, match="transform_param"):
        make_layer('type: "HDF5Data" top: "d" transform_param { scale: 2 } '
                   f'hdf5_data_param {{ source: "{files}/list.txt" batch_size: 1 }}')
    (files / "list.txt").write_text(f"{files}/part0.h5 {files}/gone.h5\n")
    layer, top = hdf5_layer(files, batch=5)
    with pytest.raises(ConfnetError, match="gone.h5"):
        layer.forward([], top)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ConfnetError, match=r"HDF5Data needs h5py: pip install confnet\[hdf5\]"):
        hdf5_layer(files)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu(device, files):
    # Batches of 3 from files of 5 and 3 rows: the second and third batches span two files.
    batches = check_data_gpu(device, lambda: hdf5_layer(files, "shuffle: true",
                                                        dtype=np.float32), batches=4)
    labels = np.concatenate([labels for _, labels in batches]).astype(int)
    assert sorted(labels[:8]) == list(range(8))   # one pass over both files, shuffled
