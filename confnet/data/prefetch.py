"""Background preparation of batches, so the trainer never waits for the disk or the decoder.

One thread reads `batch_size` values from the reader, decodes them, applies the transformer and
puts the (data, label) pair into a bounded queue. Because the thread runs ahead, the reader's own
position is not where training is: `state()` returns the position and transformer RNG state from
which the *next batch to be consumed* was made, and `restore(state)` makes it again, so a resumed
run sees exactly the batches an uninterrupted one would have.

In data-parallel training (`shard`) rank r of N takes batches r, r + N, r + 2N, ... of the
sequence one process would read, as Caffe's multi-GPU data reader: the N ranks' batches of one
iteration are together the N consecutive batches that one process of batch N x B would see.
"""

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from confnet.data.datum import decode_datum
from confnet.data.transformer import DataTransformer
from confnet.errors import ConfnetError

_POLL_S = 0.1


class _Batch:
    __slots__ = ("data", "label", "state_after")

    def __init__(self, data, label, state_after):
        self.data, self.label, self.state_after = data, label, state_after


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


class BatchPrefetcher:
    """Yields float32 (data (N, C, H, W), label (N,)) batches prepared by a background thread.

    reader: LMDBReader-like (`read_batch(n)`, settable `position`, optional `path`).
    decode_fn: raw value -> (CHW image, label); default decodes a Datum (honouring the
        transformer's force_color/force_gray).
    transformer: a DataTransformer; default the identity.
    prefetch: batches prepared ahead. workers: threads decoding the images of one batch (>1
        helps with encoded JPEG/PNG, whose decoding releases the GIL).
    """

    def __init__(self, reader, batch_size, decode_fn=None, transformer=None, prefetch=4,
                 workers=1):
        if batch_size < 1:
            raise ConfnetError(f"batch_size must be at least 1, got {batch_size}")
        self.reader = reader
        self.batch_size = batch_size
        self.transformer = transformer if transformer is not None else DataTransformer()
        if decode_fn is None:
            decode_fn = partial(decode_datum, force_color=self.transformer.force_color,
                                force_gray=self.transformer.force_gray)
        self.decode_fn = decode_fn
        self._queue = queue.Queue(maxsize=max(1, prefetch))
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self._thread = None
        self._peeked = None
        self._error = None
        self._stride = 0    # values skipped after each batch: those of the other ranks
        self._next_state = self._current_state()
        self._start()

    def next_batch(self):
        """The next (data, label) pair; re-raises here any error of the background thread."""
        item = self._take()
        self._peeked = None
        self._next_state = item.state_after
        return item.data, item.label

    def batch_shape(self):
        """Shape (N, C, H, W) of the batches, waiting for the first one if needed."""
        return self._take().data.shape

    def state(self):
        """{'position', 'rng'}: where the next batch to be consumed comes from."""
        return dict(self._next_state)

    def restore(self, state):
        """Repositions so that the next batch is the one `state()` described."""
        self._stop()
        self.reader.position = state["position"]
        self.transformer.rng.bit_generator.state = state["rng"]
        self._next_state = self._current_state()
        self._start()

    def shard(self, rank, ranks):
        """From the next batch on, read only every `ranks`-th batch, starting `rank` batches
        later. The transformer's random stream becomes stream `rank` of a family drawn from the
        current one, so that ranks crop and mirror independently (and repeatably)."""
        if not 0 <= rank < ranks:
            raise ConfnetError(f"rank {rank} is not in 0..{ranks - 1}")
        self._stop()
        self.reader.position = self._next_state["position"]
        self.transformer.rng.bit_generator.state = self._next_state["rng"]
        family = int(self.transformer.rng.integers(2**63))
        # Set the state, not the object: a layer may hold the same generator (WindowData).
        own = np.random.default_rng([family, rank]).bit_generator.state
        self.transformer.rng.bit_generator.state = own
        self._skip(rank * self.batch_size)
        self._stride = (ranks - 1) * self.batch_size
        self._next_state = self._current_state()
        self._start()

    def close(self):
        """Stops the background thread; the prefetcher cannot be used afterwards."""
        self._stop()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def _current_state(self):
        return {"position": self.reader.position, "rng": self.transformer.rng.bit_generator.state}

    def _take(self):
        if self._peeked is None:
            self._peeked = self._get()
        return self._peeked

    def _get(self):
        if self._error is not None:
            raise self._error
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the data prefetch thread has stopped")
        if isinstance(item, _Failure):
            self._error = item.error
            raise item.error
        return item

    def _start(self):
        self._stopping = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(self._stopping,),
                                        name="confnet-prefetch", daemon=True)
        self._thread.start()

    def _stop(self):
        if self._thread is None:
            return
        self._stopping.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(_POLL_S)
        self._drain()
        self._thread = None
        self._peeked = None

    def _drain(self):
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _run(self, stopping):
        try:
            while not stopping.is_set():
                self._put(self._make_batch(), stopping)
        except Exception as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(_Failure(e), stopping)

    def _put(self, item, stopping):
        while not stopping.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _make_batch(self):
        start = self.reader.position
        values = self.reader.read_batch(self.batch_size)
        mapper = self._pool.map if self._pool is not None else map
        try:
            images, labels = zip(*mapper(self.decode_fn, values))
        except ConfnetError as e:
            where = getattr(self.reader, "path", "data source")
            raise ConfnetError(f"'{where}', batch starting at entry {start}: {e}") from e
        data = self.transformer.transform_images([np.asarray(image) for image in images])
        self._skip(self._stride)
        return _Batch(data, np.asarray(labels, dtype=np.float32), self._current_state())

    def _skip(self, n):
        """Move the reader past `n` values (without reading them where it can)."""
        if n:
            skip = getattr(self.reader, "skip", None)
            skip(n) if skip is not None else self.reader.read_batch(n)
