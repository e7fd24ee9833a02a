"""LMDB databases as Caffe reads and writes them: an environment directory (data.mdb, lock.mdb).

LMDBWriter builds a database in `<db>.partial-<pid>` and renames it to `<db>` only when it closes
without an error, so an interrupted conversion never leaves something that looks complete.
LMDBReader walks the entries in key order and starts again at the first after the last, as
Caffe's Data layer does; its `position` (the index of the next entry) is what a snapshot saves.
"""

import glob
import os
import shutil
import threading

import lmdb

from confnet.errors import ConfnetError

_INITIAL_MAP_SIZE = 1 << 26  # 64 MiB; doubled whenever a commit finds the map full

# py-lmdb opens an environment once per process, but a train and a test net may read one database:
# readers share it (real path -> [environment, number of readers]).
_SHARED = {}
_SHARED_LOCK = threading.Lock()


class LMDBWriter:
    """Writes key/value pairs to a new LMDB at `path` (a context manager).

    Puts are buffered and committed `commit_every` at a time. `overwrite=True` replaces an existing
    database, but only once the new one is complete.
    """

    def __init__(self, path, *, commit_every=1000, overwrite=False, map_size=_INITIAL_MAP_SIZE):
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise ConfnetError(f"LMDB '{self.path}' already exists; remove it or write to "
                               "another path")
        self.overwrite = overwrite
        self.commit_every = commit_every
        self.partial_path = f"{self.path}.partial-{os.getpid()}"
        _remove_stale_partials(self.path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        try:
            self._env = lmdb.open(self.partial_path, map_size=map_size, subdir=True,
                                  readahead=False, meminit=False)
        except lmdb.Error as e:
            raise ConfnetError(f"cannot create LMDB '{self.path}': {e}")
        self._pending = []
        self._max_key = None
        self.count = 0

    def put(self, key, value):
        """Stores `value` (bytes) under `key` (str or bytes); committed in batches."""
        if isinstance(key, str):
            key = key.encode("utf-8")
        self._pending.append((key, value))
        if len(self._pending) >= self.commit_every:
            self._commit()

    def write_file(self, name, text):
        """Put a small text file (such as labels.txt) inside the database folder: it appears
        with the database, complete, or not at all."""
        with open(os.path.join(self.partial_path, name), "w", encoding="utf-8") as f:
            f.write(text)

    def _commit(self):
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    max_key = self._put_all(txn)
                break
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        self.count += len(self._pending)
        self._max_key = max_key
        self._pending = []

    def _put_all(self, txn):
        # Keys written in increasing order (as convert_imageset writes them) can be appended,
        # which is much faster than a B-tree insert; anything else is an ordinary put.
        max_key = self._max_key
        for key, value in self._pending:
            if max_key is None or key > max_key:
                txn.put(key, value, append=True)
                max_key = key
            else:
                txn.put(key, value)
        return max_key

    def close(self):
        """Commits what is pending, closes the environment and renames it into place."""
        if self._env is None:
            return
        self._commit()
        self._env.sync(True)
        self._env.close()
        self._env = None
        old_path = f"{self.path}.old-{os.getpid()}"
        replacing = self.overwrite and os.path.exists(self.path)
        if replacing:
            os.rename(self.path, old_path)
        os.rename(self.partial_path, self.path)
        if replacing:
            shutil.rmtree(old_path)

    def abort(self):
        """Drops everything written: the partial database is deleted, `path` is left untouched."""
        if self._env is not None:
            self._env.close()
            self._env = None
        shutil.rmtree(self.partial_path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


class LMDBReader:
    """Reads the values of an LMDB in key order, cycling back to the first after the last."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise ConfnetError(f"cannot open LMDB '{self.path}': no such directory (an LMDB is a "
                               "directory holding data.mdb; create it with confnet convert-data)")
        if not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise ConfnetError(f"'{self.path}' is not an LMDB (it has no data.mdb); create one "
                               "with confnet convert-data")
        self._env = _open_shared(self.path)
        self._txn = None
        self.num_entries = self._env.stat()["entries"]
        if self.num_entries == 0:
            self.close()
            raise ConfnetError(f"LMDB '{self.path}' has no entries")
        self._txn = self._env.begin(buffers=False)
        self._cursor = self._txn.cursor()
        self._cursor.first()
        self._position = 0

    def __len__(self):
        return self.num_entries

    @property
    def position(self):
        """Index (0 .. len-1) of the entry the next read returns."""
        return self._position

    @position.setter
    def position(self, index):
        index = int(index)
        if not 0 <= index < self.num_entries:
            raise ConfnetError(f"LMDB '{self.path}' has {self.num_entries} entries; cannot seek to "
                               f"entry {index} (was the database changed since the snapshot?)")
        self._cursor.first()
        for _ in range(index):
            self._cursor.next()
        self._position = index

    @property
    def key(self):
        """Key (bytes) of the entry the next read returns."""
        return self._cursor.key()

    def read_batch(self, n):
        """The next `n` values (bytes), wrapping to the first entry after the last."""
        values = []
        for _ in range(n):
            values.append(self._cursor.value())
            self._position += 1
            if not self._cursor.next():
                self._cursor.first()
                self._position = 0
        return values

    def skip(self, n):
        """Move past the next `n` entries without reading their values (wrapping as
        `read_batch` does)."""
        for _ in range(n):
            self._position += 1
            if not self._cursor.next():
                self._cursor.first()
                self._position = 0

    def items(self):
        """All (key, value) pairs once, in key order, independent of the cycling cursor."""
        with self._env.begin(buffers=False) as txn:
            yield from txn.cursor()

    def close(self):
        if self._env is not None:
            if self._txn is not None:
                self._txn.abort()
            _close_shared(self.path)
            self._env = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()


def _remove_stale_partials(path):
    """Deletes `<path>.partial-<pid>` left by this process or by one that no longer runs."""
    for partial in glob.glob(glob.escape(path) + ".partial-*"):
        pid = partial.rsplit("-", 1)[1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _process_exists(int(pid))):
            shutil.rmtree(partial, ignore_errors=True)


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists but belongs to someone else
        return True
    return True


def _open_shared(path):
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        if key not in _SHARED:
            try:
                # lock=False: nobody writes a training database while it is read, and it lets a
                # database on a read-only file system be opened.
                env = lmdb.open(path, readonly=True, lock=False, subdir=True, readahead=False)
            except lmdb.Error as e:
                raise ConfnetError(f"cannot open LMDB '{path}': {e}")
            _SHARED[key] = [env, 0]
        _SHARED[key][1] += 1
        return _SHARED[key][0]


def _close_shared(path):
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        _SHARED[key][1] -= 1
        if _SHARED[key][1] == 0:
            _SHARED.pop(key)[0].close()
