"""HDF5Output layer: every batch of (data, label) appended to an HDF5 file (skipped without
h5py)."""

import numpy as np
import pytest

from tests.layers.harness import make_blobs, make_layer
from tests.layers.test_hdf5_data import hdf5_layer

h5py = pytest.importorskip("h5py")


def test_output_appends_every_batch_and_reads_back(tmp_path):
    out = tmp_path / "out.h5"
    layer = make_layer(f'type: "HDF5Output" bottom: "data" bottom: "label" '
                       f'hdf5_output_param {{ file_name: "{out}" }}')
    g = np.random.default_rng(0)
    data = [g.normal(size=(2, 3, 4)) for _ in range(2)]
    label = [g.normal(size=(2,)) for _ in range(2)]
    bottom = make_blobs([data[0], label[0]])
    layer.setup(bottom, [])
    for d, lab in zip(data, label):
        bottom[0].data[...], bottom[1].data[...] = d, lab
        layer.reshape(bottom, [])
        layer.forward(bottom, [])
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["data"][()], np.concatenate(data)[..., None])
        np.testing.assert_array_equal(f["label"][()], np.concatenate(label)[:, None, None, None])
    (tmp_path / "list.txt").write_text(f"{out}\n")
    reader, top = hdf5_layer(tmp_path, batch=4)
    reader.forward([], top)
    np.testing.assert_allclose(top[0].data[..., 0], np.concatenate(data), rtol=1e-6)
