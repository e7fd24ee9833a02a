"""Data layer: batches from an LMDB equal the records, transformed as Caffe does."""

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.data.datum import array_to_datum, datum_key
from confnet.data.lmdb_io import LMDBWriter
from confnet.errors import ConfnetError
from confnet.layers import TEST, TRAIN
from tests.layers.harness import DEVICES, device_backend, make_layer, running_on


@pytest.fixture
def db(tmp_path):
    g = np.random.default_rng(5)
    images = g.integers(0, 256, (7, 2, 5, 6), dtype=np.uint8)
    with LMDBWriter(str(tmp_path / "db")) as writer:
        for i, img in enumerate(images):
            writer.put(datum_key(i, f"{i}.png"), array_to_datum(img, i % 4).SerializeToString())
    return str(tmp_path / "db"), images.astype(np.float64)


def data_layer(source, extra="", phase=TEST, batch=3, dtype=np.float64):
    layer = make_layer(f'type: "Data" top: "data" top: "label" {extra} '
                       f'data_param {{ source: "{source}" batch_size: {batch} backend: LMDB }}',
                       phase, dtype)
    top = [Blob(), Blob()]
    layer.setup([], top)
    return layer, top


def test_batches_cycle_through_the_db_with_center_crop_mean_and_scale(db):
    source, images = db
    layer, top = data_layer(source, 'transform_param { scale: 0.5 crop_size: 3 '
                                    'mean_value: 10 mean_value: 20 }')
    assert top[0].shape == (3, 2, 3, 3) and top[1].shape == (3,)
    mean = np.array([10.0, 20.0])[:, None, None]
    order = [0, 1, 2, 3, 4, 5, 6, 0, 1]          # the reader starts over at the end
    for b in range(3):
        layer.forward([], top)
        idx = order[3 * b:3 * b + 3]
        want = (images[idx][:, :, 1:4, 1:4] - mean) * 0.5   # centre crop: offsets (1, 1)
        np.testing.assert_allclose(top[0].data, want, rtol=1e-6)
        np.testing.assert_array_equal(top[1].data, [i % 4 for i in idx])


@pytest.mark.parametrize("device", DEVICES)
def test_device_tops_get_the_batch_in_one_copy_each(db, device):
    device_backend(device)
    source, _ = db
    cpu_layer, cpu_top = data_layer(source, "transform_param { scale: 0.5 }", dtype=np.float32)
    layer, top = data_layer(source, "transform_param { scale: 0.5 }", dtype=np.float32)
    with running_on(device) as backend:
        for _ in range(3):   # the third batch wraps around the end of the db
            cpu_layer.forward_cpu([], cpu_top)
            backend.copies.reset()
            layer.forward([], top)
            assert (backend.copies.htod, backend.copies.dtoh) == (2, 0), backend.copies
            for blob, want in zip(top, cpu_top):
                np.testing.assert_array_equal(blob.cpu_data, want.cpu_data)


def test_train_mirror_flips_some_images(db):
    source, images = db
    layer, top = data_layer(source, "transform_param { mirror: true }", TRAIN, batch=7)
    layer.forward([], top)
    flipped = [np.array_equal(top[0].data[i], images[i][:, :, ::-1]) for i in range(7)]
    kept = [np.array_equal(top[0].data[i], images[i]) for i in range(7)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_cursor_state_replays_batches(db):
    source, _ = db
    layer, top = data_layer(source, "transform_param { mirror: true crop_size: 4 }", TRAIN)
    layer.forward([], top)
    state = layer.cursor_state()
    layer.forward([], top)
    expected = top[0].data.copy()
    layer.forward([], top)
    layer.restore_cursor(*state)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, expected)


def test_missing_db_and_leveldb_are_clear_errors(tmp_path, db):
    with pytest.raises(ConfnetError, match="nothing_here"):
        data_layer(str(tmp_path / "nothing_here"))
    with pytest.raises(ConfnetError, match="LEVELDB"):
        make_layer(f'type: "Data" top: "d" data_param {{ source: "{db[0]}" batch_size: 1 '
                   'backend: LEVELDB }').setup([], [Blob()])
