"""PrefetchingLayer: the base of the data layers whose batches a background thread prepares
(Data, ImageData, WindowData).

A subclass builds a BatchPrefetcher in ``layer_setup`` and hands it to ``start_prefetch``; the
base shapes the tops from the first batch, copies each batch into the tops in ``forward``,
names the layer in any error the thread raises, and saves and restores the read position and
random state for an exact resume (``cursor_state`` / ``restore_cursor``).

    top[0]: (batch_size, C, H, W) data.   top[1] (optional): (batch_size,) labels.
"""

import json

from .. import memory
from ..errors import ConfnetError
from .base import Layer


class PrefetchingLayer(Layer):
    num_bottom = 0
    min_top, max_top = 1, 2
    has_gpu = True   # forward_gpu: one host -> device copy per top; no kernels

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
        """The batch straight from the prefetcher's array into each device top (``set_data``
        copies host -> device once, without touching the top's host side)."""
        data, label = self.call(self.prefetcher.next_batch)
        top[0].reshape(data.shape)
        top[0].set_data(data)
        if len(top) > 1:
            top[1].reshape(label.shape)
            top[1].set_data(label)

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
