"""Lifetime-based sharing of a TEST net's top blobs: blobs that are never alive at the same
time use one storage, on the host and on the device.

A net without backward (a test net scored by the solver, ``confnet test``, ``confnet time
--phase TEST``) needs a top blob only from the layer that writes it to the last layer that reads
it. The plan works on *storages*, the data arrays (``SyncedArray``) of the top blobs as the
net's set up left them: a blob computed in place, and the tops that view their bottom's data
(Split, Flatten, Reshape, a one-input Concat, a one-output Slice), are one storage with several
names. For storage s, over the layer indices i:

    born(s) = min{ i : layer i has a blob of s as a top }
    dies(s) = max{ i : layer i has a blob of s as a bottom }
    size(s) = max count of its blobs (elements)

Two storages may share a buffer when their closed intervals [born, dies] are disjoint: a layer
never reads and writes the same buffer unless its blob is computed in place. Assignment is
greedy, in order of birth: a storage takes a free buffer (one whose last storage died before it
is born), the smallest one large enough, else the largest free one (which grows), else a new
one. A buffer's size is the largest storage it holds.

Never shared (kept, with the reason in ``Plan.kept``):

- the net's outputs (never read by a layer: the user reads them after forward) and tops with a
  loss weight (the device loss is read after the whole forward);
- the tops of layers without bottoms (Input, Data, DummyData, ...): inputs, and the tops data
  layers copy prefetched batches into, which DummyData may fill only once;
- storages that hold a layer's parameters (a Parameter layer's top views its parameter);
- the tops of layer types that may keep them across forwards or hold views of them
  (``KEEPS_TOPS``: Python layers run user code) and of any layer with ``keeps_tops = True``.

Diffs: a net without backward never writes a top's gradient, and a blob's host arrays are
zero pages the OS maps only when touched, its device memory allocated only on first use; the
planned blobs' diffs follow the same buffers as their data, so whatever a layer might touch
still stays within the plan.

The plan holds while the shapes do: a blob reshaped beyond its buffer gets storage of its own
(correct, no longer shared); ``Net.forward`` plans again when an input changes shape.
"""

from dataclasses import dataclass, field

from .blob import SyncedArray
from .memory import human

# Layer types whose tops must keep their own storage (see the module docstring).
KEEPS_TOPS = frozenset({"Python", "Parameter"})


@dataclass
class Storage:
    """One data array of the net and the blob names that view it."""
    names: list
    born: int = None     # first layer writing it (None: no layer does)
    dies: int = None     # last layer reading it (None: no layer does)
    count: int = 0       # elements: the largest of its blobs
    itemsize: int = 4
    kept: str = None     # why it is never shared, or None


@dataclass
class Plan:
    """The buffers of a net: ``buffers[k]`` lists the storages (``Storage``) sharing buffer k,
    ``sizes[k]`` its elements. ``kept`` lists the storages left alone."""
    buffers: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    kept: list = field(default_factory=list)

    @property
    def shared_names(self):
        return [name for group in self.buffers for s in group for name in s.names]

    @property
    def planned_bytes(self):
        """Bytes of the shared buffers' data."""
        return sum(size * group[0].itemsize for size, group in zip(self.sizes, self.buffers))

    @property
    def unplanned_bytes(self):
        """Bytes the same storages would take, each on its own."""
        return sum(s.count * s.itemsize for group in self.buffers for s in group)

    @property
    def kept_bytes(self):
        return sum(s.count * s.itemsize for s in self.kept)

    def summary(self, net_name):
        """One log line: "test net 'x': 9 blobs (7 storages) in 2 shared buffers, 1.2 MiB
        instead of 5.3 MiB; ..."."""
        storages = sum(len(group) for group in self.buffers)
        return (f"test net '{net_name}': {len(self.shared_names)} blobs ({storages} storages) "
                f"in {len(self.buffers)} shared buffers, {human(self.planned_bytes)} instead of "
                f"{human(self.unplanned_bytes)}; {len(self.kept)} storages kept apart "
                f"({human(self.kept_bytes)}: inputs, outputs, losses, parameters)")


def storages(net):
    """The net's top storages with their lifetimes and, for those never shared, the reason."""
    by_id = {}
    for name, blob in net.blobs.items():
        s = by_id.setdefault(id(blob.storage), Storage([], itemsize=blob.dtype.itemsize))
        s.names.append(name)
        s.count = max(s.count, blob.count)
    where = {name: s for s in by_id.values() for name in s.names}
    params = {id(p.storage) for layer in net.layers for p in layer.blobs}
    outputs = set(net.outputs)
    for i, (layer, bottoms, tops) in enumerate(zip(net.layers, net.bottom_ids, net.top_ids)):
        for name in bottoms:
            s = where[name]
            s.dies = i if s.dies is None else max(s.dies, i)
        for name, weight in zip(tops, layer.loss_weights or [0.0] * len(tops)):
            s = where[name]
            s.born = i if s.born is None else min(s.born, i)
            s.kept = s.kept or _keep_reason(layer, bottoms, weight)
    for key, s in by_id.items():
        if key in params:
            s.kept = "holds a layer's parameters"
        elif outputs.intersection(s.names):
            s.kept = s.kept or "a net output"
        elif s.born is None or s.dies is None:
            s.kept = s.kept or "not both written and read by layers"
    return list(by_id.values())


def _keep_reason(layer, bottoms, loss_weight):
    if not bottoms:
        return f"top of {layer.type_name} layer '{layer.name}' (an input)"
    if loss_weight:
        return "a loss"
    if layer.type_name in KEEPS_TOPS or getattr(layer, "keeps_tops", False):
        return f"top of {layer.type_name} layer '{layer.name}', which keeps its tops"
    return None


def plan(net):
    """Assign the net's shareable storages to buffers (the greedy interval assignment of the
    module docstring). Returns a Plan; nothing changes in the net."""
    result = Plan()
    candidates = []
    for s in storages(net):
        (result.kept if s.kept else candidates).append(s)
    free_after = []   # per buffer: the last layer index at which it is in use
    for s in sorted(candidates, key=lambda s: (s.born, s.dies)):
        free = [k for k, end in enumerate(free_after)
                if end < s.born and result.buffers[k][0].itemsize == s.itemsize]
        if free:
            fits = [k for k in free if result.sizes[k] >= s.count]
            k = (min(fits, key=lambda k: result.sizes[k]) if fits
                 else max(free, key=lambda k: result.sizes[k]))
            result.buffers[k].append(s)
            result.sizes[k] = max(result.sizes[k], s.count)
            free_after[k] = s.dies
        else:
            result.buffers.append([s])
            result.sizes.append(s.count)
            free_after.append(s.dies)
    return result


def apply(net, memory_plan):
    """Put every planned blob's data (and diff) into its buffer's storage, new zeroed arrays
    allocated lazily on the host and on first use on the device."""
    for size, group in zip(memory_plan.sizes, memory_plan.buffers):
        dtype = net.blobs[group[0].names[0]].dtype
        data, diff = SyncedArray(size, dtype), SyncedArray(size, dtype)
        for s in group:
            for name in s.names:
                net.blobs[name].use_storage(data, diff)
