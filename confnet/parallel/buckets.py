"""Gradient averaging over fused buckets: a few large allreduces instead of one per blob.

The learnable parameters are grouped, in reverse net order (the order backward produces their
gradients), into buckets of at most ``bucket_bytes`` (a parameter larger than that gets a
bucket of its own). Each bucket owns one flat float32 buffer. ``average`` packs the diffs of a
bucket into its buffer, starts its allreduce and packs the next bucket while it travels; then
waits, and writes back

    diff_p = (1/N) * sum over ranks r of diff_p(r)

so that N ranks of batch B give the gradient one process of batch N x B would compute (the loss
layers average over their batch). A few float64 scalars (the loss, the stop and snapshot
requests) travel in a small buffer of their own.
"""

import numpy as np

DEFAULT_BUCKET_BYTES = 25 << 20   # as PyTorch DDP's default bucket_cap_mb


class GradientBuckets:
    """Buckets over ``blobs`` (objects with ``.diff``, float32 arrays of fixed shape)."""

    def __init__(self, blobs, bucket_bytes=DEFAULT_BUCKET_BYTES):
        self.buckets = []   # [(blobs, flat float32 buffer)]
        group, size = [], 0
        for blob in reversed(list(blobs)):
            nbytes = blob.diff.size * 4
            if group and size + nbytes > bucket_bytes:
                self._close(group)
                group, size = [], 0
            group.append(blob)
            size += nbytes
        if group:
            self._close(group)

    def _close(self, group):
        self.buckets.append((group, np.empty(sum(b.diff.size for b in group), np.float32)))

    def average(self, comm, scalars=()):
        """Average every blob's diff, and ``scalars`` (a float64 sequence), over the ranks of
        ``comm``; returns the averaged scalars as a numpy array."""
        pending = []
        for group, buf in self.buckets:
            for blob, slot in _slots(group, buf):
                slot[...] = blob.diff.reshape(-1)
            pending.append(comm.allreduce_start(buf))
        extra = np.array(scalars, np.float64)
        pending.append(comm.allreduce_start(extra))
        for request in pending:
            request.Wait()
        scale = 1.0 / comm.size
        for group, buf in self.buckets:
            buf *= np.float32(scale)
            for blob, slot in _slots(group, buf):
                blob.diff[...] = slot.reshape(blob.diff.shape)
        return extra * scale


def _slots(group, buf):
    """(blob, its slice of the bucket's flat buffer) for each blob of a bucket."""
    offset = 0
    for blob in group:
        n = blob.diff.size
        yield blob, buf[offset:offset + n]
        offset += n
