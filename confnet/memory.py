"""Will it fit? Memory estimates made before anything large is touched, so a mistyped
``batch_size: 1000000`` is one line naming the layer, the bytes and the machine's memory instead
of a machine that swaps or a process the kernel kills.

Estimates, in bytes (float32 = 4 bytes per value):

    blob                    data + diff                 = 2 * 4 * count
    layer                   its tops + its parameter blobs (data, diff)
    prefetched data layer   batch_size * prod(item shape) * 4 * (prefetch + 3)
                            (the batches waiting in the queue, the one being built, and the
                            top's data and diff)

A net is checked layer by layer as it is built (``NetBudget``): the running total after each
layer's setup is compared with the memory available. Blob arrays are zero-filled by the
allocator on first touch, so a top shaped at setup costs nothing until forward writes it: the
check after setup still comes before the memory is used. Data layers check before their
background thread reads the first batch (``check_batch``).

``check_fits(needed, available, what, where)`` is the one comparison; the GPU backend calls it
with the device's free memory.
"""

import os

from .errors import ConfnetError

FLOAT_BYTES = 4


def host_memory():
    """(available, total) bytes of this machine's memory: MemAvailable and MemTotal of
    /proc/meminfo, else the free and total physical pages (os.sysconf)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f
                      if line.rstrip().endswith("kB")}
        return fields["MemAvailable"], fields["MemTotal"]
    except (OSError, KeyError, ValueError, IndexError):
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def check_fits(needed, available, what, where="this machine", total=None):
    """Raise a ConfnetError unless `needed` bytes fit into `available` bytes.

    what: who needs the memory ("layer 'data' (Data): a batch of 1000000 x 1 x 28 x 28").
    where: whose memory it is ("this machine", "GPU 0"); total: its size, when known.
    """
    if needed <= available:
        return
    of_total = f" of {human(total)}" if total else ""
    raise ConfnetError(f"{what} needs {human(needed)}, but {where} has {human(available)} "
                       f"available{of_total}; make the batch or the net smaller")


def check_host(needed, what):
    """check_fits against this machine's available memory."""
    available, total = host_memory()
    check_fits(needed, available, what, total=total)


def batch_bytes(batch_size, item_shape, prefetch):
    """Bytes a prefetching data layer holds: see the module docstring."""
    count = batch_size
    for dim in item_shape:
        count *= int(dim)
    return count * FLOAT_BYTES * (prefetch + 3)


def check_batch(layer, batch_size, item_shape, prefetch):
    """Before a data layer reads its first batch: will `prefetch` + 3 batches fit?"""
    dims = " x ".join(str(d) for d in (batch_size, *item_shape))
    check_host(batch_bytes(batch_size, item_shape, prefetch),
               f"layer '{layer.name}' ({layer.type_name}): batches of {dims} values "
               f"(batch_size {batch_size}, {prefetch} prepared ahead)")


def layer_bytes(layer, tops, seen=None):
    """Bytes of a set-up layer's tops and parameters (data and diff of each); blobs whose id is
    in `seen` (an in-place top, counted with the layer that made it) are skipped and added."""
    seen = set() if seen is None else seen
    total = 0
    for blob in list(tops) + list(layer.blobs):
        if id(blob) not in seen:
            seen.add(id(blob))
            total += 2 * blob.count * blob.dtype.itemsize
    return total


class NetBudget:
    """The running total of a net's memory, checked after each layer is set up."""

    def __init__(self, net_name):
        self.net_name = net_name
        self.total = 0
        self.seen = set()
        self.available, self.machine = host_memory()

    def add(self, layer, tops):
        self.total += layer_bytes(layer, tops, self.seen)
        check_fits(self.total, self.available,
                   f"net '{self.net_name}', up to layer '{layer.name}' ({layer.type_name}),",
                   total=self.machine)


def human(nbytes):
    """1536 -> '1.5 KiB'."""
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
