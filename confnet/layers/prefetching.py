"""PrefetchingLayer: the base of the data layers whose batches a background thread prepares
(Data, ImageData, WindowData).

A subclass builds a BatchPrefetcher in ``layer_setup`` and hands it to ``start_prefetch``; the
base shapes the tops from the first batch, copies each batch into the tops in ``forward``,
names the layer in any error the thread raises, and saves and restores the read position and
random state for an exact resume (``cursor_state`` / ``restore_cursor``).

    top[0]: (batch_size, C, H, W) data.   top[1] (optional): (batch_size,) labels.
"""

import json

import numpy as np

from .. import gpu, memory
from ..errors import ConfnetError
from .base import Layer


class PrefetchingLayer(Layer):
    num_bottom = 0
    min_top, max_top = 1, 2
    has_gpu = True   # forward_gpu: one host -> device copy per top; no kernels
    _staged = None   # forward_gpu's _DoubleBuffer per top

    def check_memory(self, batch_size, item_shape, prefetch):
        """Before the prefetcher reads anything: do its batches fit in memory? ``item_shape``
        (C, H, W) of one transformed item; None when the first item cannot be read (the
        prefetcher then reports why)."""
        if item_shape is not None:
            memory.check_batch(self, batch_size, item_shape, prefetch)

    def start_prefetch(self, prefetcher, top):
        self.prefetcher = prefetcher
        shape = self.call(prefetcher.batch_shape)
        top[0].reshape(shape)
        if len(top) > 1:
            top[1].reshape(shape[:1])

    def call(self, fetch):
        """``fetch()``, with the layer named in a ConfnetError it raises."""
        try:
            return fetch()
        except ConfnetError as e:
            self.fail(str(e))

    def reshape(self, bottom, top):
        """Shapes are fixed by the data; forward reshapes if a batch differs."""

    def forward_cpu(self, bottom, top):
        data, label = self.call(self.prefetcher.next_batch)
        top[0].reshape(data.shape)
        top[0].data[...] = data
        if len(top) > 1:
            top[1].reshape(label.shape)
            top[1].data[...] = label

    def forward_gpu(self, bottom, top):
        """The batch from the prefetcher's arrays into the device tops, one host -> device copy
        each (the tops' host side is never touched). Each copy goes into one of two device
        buffers of the top, in turn, with ``upload_async``, and from there into the top on the
        device: on a GPU the copy of this batch then runs while the previous iteration's
        kernels, which still read the top, finish; the buffer's other half is reused only after
        the device copy out of it is done (the mark ``after``)."""
        batch = self.call(self.prefetcher.next_batch)
        if self._staged is None:
            self._staged = [_DoubleBuffer(self) for _ in top]
        for blob, values, buffers in zip(top, batch, self._staged):
            buffers.fill(blob, values)

    def cursor_state(self):
        """(read position, JSON of the random state and ``extra_state()``) of the next batch."""
        state = self.prefetcher.state()
        return int(state["position"]), json.dumps({"rng": state["rng"], **self.extra_state()})

    def restore_cursor(self, position, saved):
        saved = json.loads(saved)
        self.restore_extra_state(saved)
        self.prefetcher.restore({"position": position, "rng": saved["rng"]})

    def shard(self, rank, ranks):
        """Data-parallel rank `rank` of `ranks`: read every `ranks`-th batch (see
        BatchPrefetcher.shard)."""
        self.prefetcher.shard(rank, ranks)

    def extra_state(self):
        """More state a subclass needs to replay its batches (a dict of JSON values)."""
        return {}

    def restore_extra_state(self, saved):
        """Take back what ``extra_state`` saved."""


class _DoubleBuffer:
    """Two device buffers of a data layer's top, filled in turn; each keeps the mark recorded
    after the device copy out of it, which its next upload waits for."""

    def __init__(self, layer):
        self.blobs = [layer.new_blob(), layer.new_blob()]
        self.released = [None, None]
        self.turn = 0

    def fill(self, top, values):
        """``values`` (host array) into ``top`` on the device: upload into the buffer whose turn
        it is, then copy device -> device into the top."""
        backend = gpu.current()
        k, self.turn = self.turn, 1 - self.turn
        staging = self.blobs[k]
        staging.reshape(values.shape)
        top.reshape(values.shape)
        backend.upload_async(staging.mutable_gpu_data, np.ascontiguousarray(values, np.float32),
                             after=self.released[k])
        top.copy_from(staging)
        self.released[k] = backend.record_event()
