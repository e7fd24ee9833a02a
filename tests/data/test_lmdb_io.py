import os

import lmdb
import pytest

from confnet.data.lmdb_io import LMDBReader, LMDBWriter
from confnet.errors import ConfnetError


def write_db(path, n, **kwargs):
    with LMDBWriter(path, **kwargs) as writer:
        for i in range(n):
            writer.put(f"{i:08d}_x", b"v%d" % i)


def test_write_read_cycle_and_position(tmp_path):
    db = tmp_path / "db"
    write_db(db, 10, commit_every=3)
    assert sorted(os.listdir(db)) == ["data.mdb", "lock.mdb"]
    assert os.listdir(tmp_path) == ["db"]
    with LMDBReader(db) as reader:
        assert len(reader) == 10
        assert reader.read_batch(4) == [b"v0", b"v1", b"v2", b"v3"]
        assert reader.position == 4
        assert reader.read_batch(8) == [b"v%d" % i for i in [4, 5, 6, 7, 8, 9, 0, 1]]
        assert reader.position == 2 and reader.key == b"00000002_x"
        reader.position = 7
        assert reader.read_batch(4) == [b"v7", b"v8", b"v9", b"v0"]
        with pytest.raises(ConfnetError, match="entry 10"):
            reader.position = 10


def test_plain_lmdb_client_reads_it(tmp_path):
    write_db(tmp_path / "db", 3)
    env = lmdb.open(str(tmp_path / "db"), readonly=True)  # as Caffe opens it: subdir, lock
    with env.begin() as txn:
        assert list(txn.cursor()) == [(b"%08d_x" % i, b"v%d" % i) for i in range(3)]
    env.close()


def test_map_grows_when_full(tmp_path):
    with LMDBWriter(tmp_path / "db", map_size=1 << 16, commit_every=7) as writer:
        for i in range(40):
            writer.put(f"{i:03d}", bytes(4096))
    assert len(LMDBReader(tmp_path / "db")) == 40


def test_unordered_keys(tmp_path):
    with LMDBWriter(tmp_path / "db") as writer:
        for key in ["b", "a", "c", "ab"]:
            writer.put(key, key.encode())
    assert [k for k, _ in LMDBReader(tmp_path / "db").items()] == [b"a", b"ab", b"b", b"c"]


def test_exception_mid_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), LMDBWriter(tmp_path / "db", commit_every=2) as writer:
        for i in range(5):
            writer.put(str(i), b"x")
        assert any(name.startswith("db.partial-") for name in os.listdir(tmp_path))
        raise RuntimeError("disk on fire")
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_unless_asked(tmp_path):
    write_db(tmp_path / "db", 2)
    with pytest.raises(ConfnetError, match="already exists"):
        LMDBWriter(tmp_path / "db")
    write_db(tmp_path / "db", 5, overwrite=True)
    assert len(LMDBReader(tmp_path / "db")) == 5


def test_reader_errors(tmp_path):
    with pytest.raises(ConfnetError, match="cannot open LMDB '.*missing'"):
        LMDBReader(tmp_path / "missing")
    (tmp_path / "notdb").mkdir()
    (tmp_path / "notdb" / "data.mdb").write_bytes(b"garbage" * 1000)
    with pytest.raises(ConfnetError, match="cannot open LMDB"):
        LMDBReader(tmp_path / "notdb")
    write_db(tmp_path / "empty", 0)
    with pytest.raises(ConfnetError, match="no entries"):
        LMDBReader(tmp_path / "empty")


def test_partials_of_dead_processes_are_cleaned(tmp_path):
    (tmp_path / "db.partial-999999999").mkdir()  # no such process
    write_db(tmp_path / "db", 1)
    assert os.listdir(tmp_path) == ["db"]
