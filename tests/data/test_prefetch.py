import numpy as np
import pytest

from confnet.data.datum import array_to_datum
from confnet.data.lmdb_io import LMDBReader, LMDBWriter
from confnet.data.prefetch import BatchPrefetcher
from confnet.data.transformer import DataTransformer
from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb


@pytest.fixture
def db(tmp_path):
    rng = np.random.default_rng(0)
    with LMDBWriter(tmp_path / "db") as writer:
        for i in range(13):
            image = rng.integers(0, 256, (1, 6, 6), dtype=np.uint8)
            writer.put(f"{i:08d}_{i}.png", array_to_datum(image, i).SerializeToString())
    return tmp_path / "db"


def make(db, seed=0, prefetch=3, workers=1):
    p = pb.TransformationParameter(crop_size=4, mirror=True, scale=0.5)
    transformer = DataTransformer(p, pb.TRAIN, np.random.default_rng(seed))
    return BatchPrefetcher(LMDBReader(db), 5, transformer=transformer, prefetch=prefetch,
                           workers=workers)


def test_batches_cycle_through_the_db(db):
    with make(db) as prefetcher:
        assert prefetcher.batch_shape() == (5, 1, 4, 4)
        labels = [prefetcher.next_batch()[1] for _ in range(3)]
    assert labels[0].dtype == np.float32
    assert np.concatenate(labels).tolist() == [*range(13), 0, 1]


def test_state_restore_replays_the_same_batches(db):
    with make(db, workers=2) as prefetcher:
        for _ in range(2):
            prefetcher.next_batch()
        state = prefetcher.state()
        assert state["position"] == 10  # not the look-ahead position of the thread
        expected = [prefetcher.next_batch() for _ in range(4)]
    with make(db, seed=123) as resumed:
        resumed.next_batch()
        resumed.restore(state)
        got = [resumed.next_batch() for _ in range(4)]
    for (data_a, label_a), (data_b, label_b) in zip(expected, got):
        np.testing.assert_array_equal(data_a, data_b)
        np.testing.assert_array_equal(label_a, label_b)


def test_errors_in_the_thread_reach_the_consumer(tmp_path):
    with LMDBWriter(tmp_path / "bad") as writer:
        writer.put("0", b"\xff\xff\xff not a datum")
    with BatchPrefetcher(LMDBReader(tmp_path / "bad"), 2) as prefetcher:
        with pytest.raises(ConfnetError, match="bad.*entry 0.*Datum"):
            prefetcher.next_batch()
        with pytest.raises(ConfnetError):
            prefetcher.next_batch()
