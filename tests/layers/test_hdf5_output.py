"""HDF5Output layer: every batch of (data, label) appended to an HDF5 file (skipped without
h5py)."""

import contextlib
import logging

import numpy as np
import pytest

from confnet.layers import base
from tests.layers.harness import DEVICES, device_backend, make_blobs, make_layer, running_on
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


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_runs_on_the_host_with_one_copy_per_bottom_logged_once(device, tmp_path, caplog,
                                                                    monkeypatch):
    backend = device_backend(device)
    monkeypatch.setattr(base, "_host_fallbacks", set())
    caplog.set_level(logging.INFO, logger="confnet")
    g = np.random.default_rng(1)
    data = [g.normal(size=(3, 2, 5)).astype(np.float32) for _ in range(2)]
    label = [g.normal(size=(3,)).astype(np.float32) for _ in range(2)]
    files = []
    for name in ("host", "device"):
        out = tmp_path / f"{name}.h5"
        files.append(out)
        layer = make_layer(f'type: "HDF5Output" bottom: "data" bottom: "label" '
                           f'hdf5_output_param {{ file_name: "{out}" }}', dtype=np.float32)
        with running_on(device) if name == "device" else contextlib.nullcontext():
            bottom = make_blobs([data[0], label[0]], np.float32)
            layer.setup(bottom, [])
            for d, lab in zip(data, label):
                for blob, values in zip(bottom, (d, lab)):
                    blob.set_data(values)   # in the device run: the device is newer
                backend.copies.reset()
                layer.forward(bottom, [])
                if name == "device":
                    assert (backend.copies.dtoh, backend.copies.htod) == (2, 0)
                    for blob in bottom:   # still valid on the device: no copy back
                        blob.gpu_data
                    assert backend.copies.htod == 0
    with h5py.File(files[0], "r") as want, h5py.File(files[1], "r") as got:
        for name in ("data", "label"):
            np.testing.assert_array_equal(got[name][()], want[name][()])
    notes = [r for r in caplog.records if "HDF5Output" in r.getMessage()]
    assert len(notes) == 1 and "runs on the host by design" in notes[0].getMessage()
