"""Net: a directed acyclic graph of layers built from a NetParameter.

Building a net, in order (as Caffe does):

1. keep the layers whose include/exclude rules match the NetState (phase, level, stages);
2. insert a Split layer wherever one blob feeds several layers, so each consumer gets its own
   diff and the gradients are summed;
3. create every layer, connect its bottoms to earlier tops (a top named like one of its bottoms
   is computed in place), set it up and log its top shapes;
4. collect the learnable parameters, honouring ``param { name lr_mult decay_mult }`` (layers that
   name the same parameter share one blob, data and gradient);
5. work out which layers need backward: those on a path from a parameter with lr_mult != 0 to a
   loss (with ``force_backward``: every layer, down to the inputs);
6. pair each in-place ReLU with the Convolution or InnerProduct that produces its blob, where
   the device can apply it in that layer's product (``fused_relus``).

Running it, as pycaffe does: ``forward(**inputs)`` sets the tops of the Input layers, runs the
layers and returns the output blobs' data by name; ``backward(**top_diffs)`` runs the layers that
need backward in reverse order and returns the diffs of the inputs. ``start``/``end`` name the
first and last layer to run. The solver uses ``forward_loss`` (the summed loss) and
``forward_backward``.

Weights: ``copy_from`` copies parameters by layer name from a .caffemodel (any format Caffe has
written), a .caffemodel.h5 or a NetParameter; ``save`` writes a .caffemodel (or .h5).

Memory: a TEST net built with ``share_blobs=True`` (the solver's test nets, ``confnet test``,
``confnet time --phase TEST``) lets top blobs whose lifetimes do not overlap share one storage
(``confnet/memory_plan.py``); its intermediate blobs then hold whatever the last blob of their
buffer wrote, so it runs forward only, from the first layer. Nets built otherwise (pycaffe's
API, scripts) keep every blob.
"""

import logging
import os
from collections import OrderedDict

import numpy as np

from . import gpu
from .blob import Blob, SyncedArray
from .errors import ConfnetError
from .layers import TEST, TRAIN, create_layer
from .memory import NetBudget
from .proto import confnet_pb2 as pb

log = logging.getLogger("confnet")


class Net:
    """A net for one phase. ``source`` is a NetParameter or the path of a prototxt (or of a
    .caffemodel, whose layer definitions it holds).

    ``weights`` (a .caffemodel or .caffemodel.h5) is copied in by layer name. pycaffe's older
    form ``Net(prototxt, weights, phase)`` works too. ``share_blobs`` (TEST nets only): plan the
    top blobs' memory by lifetime (``plan_memory``).
    """

    def __init__(self, source, phase=TRAIN, level=0, stages=(), weights=None, dtype=np.float32,
                 share_blobs=False):
        from .proto import io
        if isinstance(phase, (str, os.PathLike)):
            weights, phase, level = phase, level, 0
        if isinstance(source, (str, os.PathLike)):
            param = io.read_net(source)
        else:
            param = io.upgrade_net(_copy_net(source), "the given net")
        self.phase = phase
        self.name = param.name
        self.dtype = np.dtype(dtype)
        self.force_backward = param.force_backward
        self._device_loss = self._loss_term = None
        state = pb.NetState(phase=phase, level=level or param.state.level,
                            stage=list(stages) or list(param.state.stage))
        layer_params = insert_splits(filter_layers(param, state))
        self.layers, self.layer_names = [], []
        self.bottom_ids, self.top_ids = [], []
        self.blobs = OrderedDict()
        self._budget = NetBudget(self.name)
        for lp in layer_params:
            self._append_layer(lp)
        self._collect_params()
        self._decide_backward()
        self.fused_relus = fused_relus(self.layers, self.bottom_ids, self.top_ids)
        self._fuse_within(0, len(self.layers) - 1)   # layer-by-layer runs (timing) fuse too
        for producer, relu in self.fused_relus:
            log.info("%s applies the ReLU %s on the device", self.layer_names[producer],
                     self.layer_names[relu])
        consumed = {name for ids in self.bottom_ids for name in ids}
        self.outputs = [name for name in self.blobs if name not in consumed]
        self.inputs = [name for layer, tops in zip(self.layers, self.top_ids)
                       if layer.type_name == "Input" for name in tops]
        self.layer_dict = OrderedDict(zip(self.layer_names, self.layers))
        log.info("Network '%s' (%s) initialized: %d layers, memory required for data: %d bytes",
                 self.name, "TRAIN" if phase == TRAIN else "TEST", len(self.layers),
                 self.data_bytes())
        self.memory_plan = None
        if share_blobs:
            self.plan_memory()
        if weights:
            self.copy_from(weights)

    # -- building ------------------------------------------------------------------------------
    def _append_layer(self, lp):
        if not lp.HasField("phase"):
            lp.phase = self.phase
        layer = create_layer(lp, self.phase, self.dtype)
        if lp.propagate_down and len(lp.propagate_down) != len(lp.bottom):
            layer.fail(f"has {len(lp.propagate_down)} propagate_down values for "
                       f"{len(lp.bottom)} bottoms")
        for name in lp.bottom:
            if name not in self.blobs:
                layer.fail(f"bottom blob '{name}' is not produced by any earlier layer "
                           f"(blobs so far: {', '.join(self.blobs) or 'none'})")
        bottoms = [self.blobs[name] for name in lp.bottom]
        top_names = list(lp.top)
        if not top_names and layer.auto_top:
            top_names = [f"{lp.name}_auto_top{i}" for i in range(max(layer.min_top, 1))]
        tops = []
        for name in top_names:
            if name in self.blobs and name not in lp.bottom:
                layer.fail(f"top blob '{name}' is already produced by an earlier layer; "
                           "give it another name (or compute it in place: bottom and top equal)")
            tops.append(self.blobs.get(name) or Blob((), self.dtype, name))
            self.blobs[name] = tops[-1]
        log.info("Creating layer %s (%s): %s -> %s", lp.name, lp.type,
                 ", ".join(lp.bottom) or "-", ", ".join(top_names) or "-")
        try:
            layer.setup(bottoms, tops)
        except MemoryError:
            layer.fail("out of memory while setting up its tops and parameters; make the "
                       "batch or the layer smaller")
        self._budget.add(layer, tops)
        for name, blob in zip(top_names, tops):
            log.info("Top shape: %s (%d)", " ".join(map(str, blob.shape)), blob.count)
        self.layers.append(layer)
        self.layer_names.append(lp.name)
        self.bottom_ids.append(list(lp.bottom))
        self.top_ids.append(top_names)

    def _collect_params(self):
        """Learnable parameters, with sharing by ParamSpec name and lr/decay multipliers."""
        self.params = OrderedDict()
        self.learnable_params, self.params_lr, self.params_weight_decay = [], [], []
        self.param_need_backward = []
        self.shared_params = set()    # (layer name, index) of parameters owned by another layer
        owners = {}
        for layer in self.layers:
            specs = list(layer.param.param)
            if len(specs) > len(layer.blobs):
                layer.fail(f"has {len(specs)} param specs but only {len(layer.blobs)} "
                           "parameter blobs")
            need = []
            for i, blob in enumerate(layer.blobs):
                spec = specs[i] if i < len(specs) else pb.ParamSpec()
                need.append(spec.lr_mult != 0)
                if spec.name and spec.name in owners:
                    layer.blobs[i] = self._share(layer, i, spec, owners[spec.name])
                    self.shared_params.add((layer.name, i))
                    continue
                if spec.name:
                    owners[spec.name] = blob
                self.learnable_params.append(blob)
                self.params_lr.append(spec.lr_mult)
                self.params_weight_decay.append(spec.decay_mult)
            self.param_need_backward.append(need)
            if layer.blobs:
                self.params[layer.name] = layer.blobs

    @staticmethod
    def _share(layer, index, spec, owner):
        mine = layer.blobs[index]
        strict = spec.share_mode == pb.ParamSpec.STRICT
        if (mine.shape != owner.shape) if strict else (mine.count != owner.count):
            layer.fail(f"cannot share parameter '{spec.name}': shape {mine.shape} here, "
                       f"{owner.shape} where it is first defined")
        if mine.shape == owner.shape:
            return owner
        shared = Blob(mine.shape, owner.dtype, spec.name)
        shared.share_data(owner, mine.shape)
        shared.share_diff(owner, mine.shape)
        return shared

    def _decide_backward(self):
        """Which layers run backward and which bottoms get a gradient (Caffe's rules)."""
        blob_need = set()
        self.layer_need_backward, self.bottom_need_backward = [], []
        for layer, bottoms, tops, pneed in zip(self.layers, self.bottom_ids, self.top_ids,
                                               self.param_need_backward):
            pd = list(layer.param.propagate_down) or [True] * len(bottoms)
            bneed = [name in blob_need and bool(p) for name, p in zip(bottoms, pd)]
            need = any(name in blob_need for name in bottoms) or any(pneed)
            if need:
                blob_need.update(tops)
            self.layer_need_backward.append(need)
            self.bottom_need_backward.append(bneed)
        # Walk back from the losses: a layer whose tops reach no loss needs no backward.
        under_loss = set()
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            contributes = any(w != 0 or name in under_loss
                              for name, w in zip(self.top_ids[i], layer.loss_weights))
            if not contributes:
                self.layer_need_backward[i] = False
                self.bottom_need_backward[i] = [False] * len(self.bottom_ids[i])
            else:
                under_loss.update(self.bottom_ids[i])
        if self.force_backward:
            # After the walk, as in Caffe: gradients reach every input, even without a loss.
            for i, layer in enumerate(self.layers):
                pd = list(layer.param.propagate_down) or [True] * len(self.bottom_ids[i])
                self.layer_need_backward[i] = True
                self.bottom_need_backward[i] = [
                    need or (layer.allow_force_backward(j) and bool(p))
                    for j, (need, p) in enumerate(zip(self.bottom_need_backward[i], pd))]
        for name, need in zip(self.layer_names, self.layer_need_backward):
            log.debug("%s needs backward computation: %s", name, need)

    # -- running -------------------------------------------------------------------------------
    def _io(self, i):
        return ([self.blobs[n] for n in self.bottom_ids[i]],
                [self.blobs[n] for n in self.top_ids[i]])

    def reshape(self):
        for i, layer in enumerate(self.layers):
            layer.reshape(*self._io(i))

    def forward(self, blobs=None, start=None, end=None, **inputs):
        """Run the net as pycaffe's ``Net.forward`` does; return {blob name: data}.

        ``inputs`` (keyword per Input-layer top) are copied into those blobs first, which are
        reshaped when the shape differs. ``start``/``end`` name the first/last layer to run. The
        result holds the net's outputs (or, with ``end``, that layer's tops) and ``blobs``.
        """
        reshaped = False
        for name, value in inputs.items():
            if name not in self.inputs:
                raise ConfnetError(f"net '{self.name}': '{name}' is not an input blob; the "
                                   f"inputs are: {', '.join(self.inputs) or 'none'}")
            value = np.asarray(value)
            reshaped |= self.blobs[name].shape != value.shape
            self.blobs[name].reshape(value.shape)
            self.blobs[name].set_data(value)
        if reshaped and self.memory_plan is not None:
            self._plan_again()
        self._check_planned(start, blobs)
        first = self._layer_index(start, 0)
        last = self._layer_index(end, len(self.layers) - 1)
        self.forward_loss(first, last)
        names = (self.top_ids[last] if end is not None else self.outputs) + list(blobs or ())
        return {name: self.blobs[name].data for name in names}

    def forward_layer(self, i):
        """Reshape and run layer ``i``; its weighted loss (a float), or None on the device."""
        bottom, top = self._io(i)
        self.layers[i].reshape(bottom, top)
        return self.layers[i].forward(bottom, top)

    def backward_layer(self, i):
        """Back-propagate through layer ``i`` if it needs backward."""
        if self.layer_need_backward[i]:
            bottom, top = self._io(i)
            self.layers[i].backward(top, self.bottom_need_backward[i], bottom)

    def forward_loss(self, start=0, end=None):
        """Run layers start..end (inclusive, by index) and return the summed loss (on the
        device, the loss tops are copied back for it)."""
        end = len(self.layers) - 1 if end is None else end
        self._fuse_within(start, end)
        losses = [self.forward_layer(i) for i in range(start, end + 1)]
        return sum(self._loss_of_layer(i) if x is None else x
                   for i, x in zip(range(start, end + 1), losses))

    def _fuse_within(self, start, end):
        """Fuse the pairs of ``fused_relus`` that lie inside layers start..end, unfuse the
        others: a run that stops after the producer (``forward(end=conv1)``) sees its output
        before the ReLU, as without fusion, and one that starts at the ReLU applies it."""
        for producer, relu in self.fused_relus:
            inside = start <= producer and relu <= end
            self.layers[producer].fuse_relu = self.layers[relu].fused = inside

    def _loss_of_layer(self, i):
        total = 0.0
        for name, weight in zip(self.top_ids[i], self.layers[i].loss_weights):
            if weight:
                total += weight * float(self.blobs[name].cpu_data.sum(dtype=np.float64))
        return total

    @property
    def device_loss(self):
        """A one-element blob: the loss of the last ``forward_backward(read_loss=False)``."""
        if self._device_loss is None:
            self._device_loss = Blob((1,), np.float32, "loss")
        return self._device_loss

    def _sum_device_loss(self, host_loss):
        """device_loss = host_loss + sum over loss tops of dot(top data, top diff): after
        ``_seed_loss_diffs`` a loss top's diff holds its weight in every element, so the dot
        product is the weighted loss, computed without leaving the device."""
        from .gpu import blas
        out = self.device_loss
        out.set_data(host_loss)
        term = self._loss_term = self._loss_term or Blob((1,), np.float32, "loss term")
        for i, layer in enumerate(self.layers):
            if not layer.on_device():
                continue
            for name, weight in zip(self.top_ids[i], layer.loss_weights):
                if weight:
                    top = self.blobs[name]
                    blas.dot(top.count, top.gpu_data, top.gpu_diff, term.mutable_gpu_data)
                    blas.axpy(1, np.float32(1), term.gpu_data, out.mutable_gpu_data)

    def backward(self, diffs=None, start=None, end=None, **top_diffs):
        """Back-propagate as pycaffe's ``Net.backward`` does; return {blob name: diff}.

        Loss tops start from their loss weight; ``top_diffs`` (keyword per output blob) set
        the diffs of outputs. ``start``/``end`` name the first/last layer, counted backwards.
        The result holds the diffs of the net's inputs (or, with ``end``, that layer's
        bottoms) and of ``diffs``.
        """
        self._refuse_backward()
        self._seed_loss_diffs()
        for name, value in top_diffs.items():
            if name not in self.outputs:
                raise ConfnetError(f"net '{self.name}': '{name}' is not an output blob; the "
                                   f"outputs are: {', '.join(self.outputs) or 'none'}")
            self.blobs[name].set_diff(value)
        last = self._layer_index(end, 0)
        wanted = self.bottom_ids[last] if end is not None else self.inputs
        self._check_gradients_reach(wanted)
        self._backward(self._layer_index(start, len(self.layers) - 1), last)
        return {name: self.blobs[name].diff for name in wanted + list(diffs or ())}

    def _check_gradients_reach(self, names):
        """Say so when no layer writes the diff of any of ``names`` (an inference net computes
        no input gradients unless force_backward is set): an error when backward would compute
        nothing at all, a warning when it still computes parameter gradients (a training net)."""
        reached = {name for bottoms, needs in zip(self.bottom_ids, self.bottom_need_backward)
                   for name, need in zip(bottoms, needs) if need}
        if not names or reached.intersection(names):
            return
        hint = ("set 'force_backward: true' in the net definition" if not self.force_backward
                else "no loss or output diff depends on them")
        message = f"net '{self.name}': backward computes no gradient for {', '.join(names)}"
        if not any(self.layer_need_backward):
            raise ConfnetError(f"{message}; {hint}")
        log.warning("%s (their diffs stay zero), only parameter gradients; for input "
                    "gradients %s", message, hint)

    def _seed_loss_diffs(self):
        for i, layer in enumerate(self.layers):
            for name, weight in zip(self.top_ids[i], layer.loss_weights):
                if weight:
                    self.blobs[name].set_diff(weight)

    def _backward(self, start, end):
        for i in range(start, end - 1, -1):
            self.backward_layer(i)

    def _layer_index(self, layer, default):
        """The index of a layer given by name (as pycaffe) or index; `default` for None."""
        if layer is None:
            return default
        if isinstance(layer, str):
            if layer not in self.layer_dict:
                raise ConfnetError(f"net '{self.name}' has no layer '{layer}'; its layers: "
                                   f"{', '.join(self.layer_names)}")
            return self.layer_names.index(layer)
        return int(layer)

    def forward_backward(self, read_loss=True, fed=()):
        """One training pass: forward, then backward from the losses; returns the loss. On the
        device, ``read_loss=False`` leaves the loss in ``device_loss`` and returns None, so an
        iteration copies nothing back. ``fed``: indices of source layers (no bottoms, no loss)
        whose forward already ran for this pass (the solver feeds them outside a CUDA graph)."""
        self._refuse_backward()
        self._fuse_within(0, len(self.layers) - 1)
        losses = [self.forward_layer(i) for i in range(len(self.layers)) if i not in fed]
        self._seed_loss_diffs()
        host_loss = sum(x for x in losses if x is not None)
        loss = None
        if gpu.current() is None:
            loss = host_loss
        elif read_loss:
            loss = host_loss + sum(self._loss_of_layer(i) for i, x in enumerate(losses)
                                   if x is None)
        else:
            self._sum_device_loss(host_loss)
        self._backward(len(self.layers) - 1, 0)
        return loss

    @property
    def top_names(self):
        """{layer name: its top blob names}, as pycaffe."""
        return OrderedDict(zip(self.layer_names, self.top_ids))

    @property
    def bottom_names(self):
        """{layer name: its bottom blob names}, as pycaffe."""
        return OrderedDict(zip(self.layer_names, self.bottom_ids))

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            blob.zero_diff()

    def data_bytes(self):
        """Bytes of the blobs' data (each storage counted once)."""
        return sum(b.count * b.dtype.itemsize for b in self.blobs.values())

    # -- memory --------------------------------------------------------------------------------
    def plan_memory(self):
        """Let top blobs whose lifetimes do not overlap share storage, on the host and on the
        device (``confnet/memory_plan.py``); logs the saving. For TEST nets, which run forward
        only: afterwards ``backward`` and ``forward(start=...)`` are refused, and only the
        inputs, outputs and losses keep their values after a forward."""
        from . import memory_plan
        if self.phase != TEST:
            raise ConfnetError(f"net '{self.name}': blob memory is shared only in TEST nets; a "
                               "TRAIN net's backward reads the blobs forward wrote")
        self.memory_plan = memory_plan.plan(self)
        memory_plan.apply(self, self.memory_plan)
        log.info("Memory plan: %s", self.memory_plan.summary(self.name))

    def _plan_again(self):
        """New input shapes: the buffers were sized for the old ones. Every planned blob gets
        storage of its own, the layers reshape (views such as Split's and Flatten's tops follow
        their bottoms again), and the plan is made for the new shapes."""
        for name in self.memory_plan.shared_names:
            self.blobs[name].use_storage(*_own_storage(self.blobs[name]))
        self.reshape()
        self.plan_memory()

    def _check_planned(self, start, blobs):
        if self.memory_plan is None:
            return
        shared = set(self.memory_plan.shared_names)
        if start is not None and self._layer_index(start, 0) > 0:
            raise ConfnetError(f"net '{self.name}' shares blob memory (share_blobs): it runs "
                               "from its first layer only; build it without share_blobs to "
                               "start in the middle")
        asked = [name for name in blobs or () if name in shared]
        if asked:
            raise ConfnetError(f"net '{self.name}' shares blob memory (share_blobs): "
                               f"{', '.join(asked)} are overwritten by later layers; build it "
                               "without share_blobs to read them")

    def _refuse_backward(self):
        if self.memory_plan is not None:
            raise ConfnetError(f"net '{self.name}' shares blob memory (share_blobs) and runs "
                               "forward only; build it without share_blobs for backward")

    # -- weights -------------------------------------------------------------------------------
    def to_proto(self, write_diff=False):
        """A NetParameter holding every layer's definition and its parameter blobs, as Caffe
        writes a .caffemodel."""
        from .proto.io import array_to_blob
        param = pb.NetParameter(name=self.name)
        for layer in self.layers:
            lp = param.layer.add()
            lp.CopyFrom(layer.param)
            del lp.blobs[:]
            for blob in layer.blobs:
                lp.blobs.append(array_to_blob(blob.cpu_data,
                                              blob.cpu_diff if write_diff else None))
        return param

    def save(self, path, write_diff=False):
        """Write the weights: Caffe's HDF5 layout if `path` ends in .h5, else a .caffemodel."""
        from .proto import hdf5
        from .proto.io import write_binary
        if hdf5.is_hdf5(path):
            self.save_hdf5(path, write_diff)
        else:
            write_binary(self.to_proto(write_diff), path)

    def save_hdf5(self, path, write_diff=False):
        """Write the weights in Caffe's HDF5 layout, whatever the file name."""
        from .proto import hdf5
        hdf5.write_weights(path, [
            (name, [(blob, (name, i) not in self.shared_params)
                    for i, blob in enumerate(layer.blobs)])
            for name, layer in zip(self.layer_names, self.layers)], write_diff)

    def copy_from(self, source):
        """Copy parameters by layer name from a NetParameter, a .caffemodel (V0, V1 or V2) or
        a .caffemodel.h5. Layers the source lacks keep their values (their fillers' for a
        renamed layer); a parameter of another shape is an error, and so is a source of which
        no layer matches (weights of another net). Returns the names of the layers copied."""
        where = source if isinstance(source, (str, os.PathLike)) else "the given net"
        return self.copy_layers(_source_layers(source), where)

    def copy_layers(self, layers, where):
        """Copy (layer name, {index: array}) pairs into the layers of the same name (see
        copy_from); ``where`` names the source in errors. Returns the names of the layers
        copied."""
        offered, copied = [], []
        for name, arrays in layers:
            if not arrays:
                continue
            offered.append(name)
            target = self.layer_dict.get(name)
            if target is None:
                log.info("Ignoring source layer %s", name)
                continue
            wanted = [j for j in range(len(target.blobs)) if (name, j) not in self.shared_params]
            if max(arrays) >= len(target.blobs) or any(j not in arrays for j in wanted):
                raise ConfnetError(
                    f"{where}: layer '{name}' has {len(arrays)} parameter blobs, the net "
                    f"expects {len(target.blobs)}; rename the layer to learn it from scratch")
            for j, array in sorted(arrays.items()):
                blob = target.blobs[j]
                blob.set_data(_fit_shape(array, blob.shape, where, name, j))
            log.info("Copied weights of layer %s", name)
            copied.append(name)
        _report_copied(where, self, offered, copied)
        return copied

    def share_weights_from(self, other):
        """Use the parameter storage of ``other``'s layers of the same name (test nets; pycaffe's
        ``share_with``). Data is shared, gradients stay this net's own."""
        for name, layer in zip(self.layer_names, self.layers):
            source = other.layer_dict.get(name)
            if source is None or not layer.blobs:
                continue
            if len(source.blobs) != len(layer.blobs):
                layer.fail(f"cannot share weights with net '{other.name}': {len(source.blobs)} "
                           f"blobs there, {len(layer.blobs)} here")
            for mine, theirs in zip(layer.blobs, source.blobs):
                if mine.shape != theirs.shape:
                    layer.fail(f"cannot share weights with net '{other.name}': shape "
                               f"{theirs.shape} there, {mine.shape} here")
                mine.share_data(theirs)

    @property
    def source_layers(self):
        """Indices of the layers without bottoms and without loss (data, input): what a pass
        starts from."""
        return [i for i, (layer, bottoms) in enumerate(zip(self.layers, self.bottom_ids))
                if not bottoms and not any(layer.loss_weights)]

    @property
    def data_layers(self):
        """Layers that keep a read position (restored on resume)."""
        return [layer for layer in self.layers if hasattr(layer, "cursor_state")]


# Layers whose device forward can apply a following ReLU in its product's epilogue.
_RELU_PRODUCERS = ("Convolution", "InnerProduct")


def fused_relus(layers, bottom_ids, top_ids):
    """[(producer index, ReLU index)]: the ReLUs whose work the producer's device forward does.

    A pair is a Convolution or InnerProduct with one top t and a device path (``has_gpu``: a
    3-D convolution runs on the host), and the first layer after it that reads t, which must
    be a ReLU with negative_slope 0 computed in place (bottom t, top t). Nothing reads t in
    between (the ReLU is its first reader), so no layer sees the difference. Only the device
    methods read the flags this sets (``fuse_relu``, ``fused``), so a host run is unchanged;
    on the device the ReLU's forward does nothing and its backward, which masks with y, is
    unchanged (y = max(x, 0) either way)."""
    pairs = []
    for i, layer in enumerate(layers):
        if (layer.type_name not in _RELU_PRODUCERS or len(top_ids[i]) != 1
                or not layer.has_gpu):
            continue
        top = top_ids[i][0]
        reader = next((j for j in range(i + 1, len(layers)) if top in bottom_ids[j]), None)
        if reader is None:
            continue
        relu = layers[reader]
        if (relu.type_name == "ReLU" and bottom_ids[reader] == [top] == top_ids[reader]
                and relu.slope == 0):
            pairs.append((i, reader))
    return pairs


def _source_layers(source):
    """(layer name, {index: array}) for every layer of a weights source (see Net.copy_from)."""
    from .proto import hdf5
    from .proto.io import blob_to_array, read_net, upgrade_net
    if not isinstance(source, (str, os.PathLike)):
        param, where = source, "the given net"
        if len(param.layers):
            param = upgrade_net(_copy_net(param), where)
    elif hdf5.is_hdf5(source):
        return hdf5.read_weights(source)
    else:
        param, where = read_net(source, weights=True), source
    # One layer at a time, so a large model is not held twice.
    return ((lp.name, {j: blob_to_array(bp, where=f"{where}: layer '{lp.name}' param {j}")
                       for j, bp in enumerate(lp.blobs)}) for lp in param.layer)


def _report_copied(where, net, offered, copied):
    """Weights that match no layer would leave the net as its fillers made it: an error. A
    partial match is what fine-tuning does; it is said, with the count."""
    wanting = [name for name, layer in net.layer_dict.items() if layer.blobs]
    if not copied and wanting:
        raise ConfnetError(
            f"{where}: none of its {len(offered)} layers with weights "
            f"({_names(offered)}) matches a layer of net '{net.name}' with parameters "
            f"({_names(wanting)}); are these the weights of another net?")
    if copied and len(copied) < len(wanting):
        log.warning("%s: copied the weights of %d of the %d layers with parameters (%s); the "
                    "others keep their fillers' values", where, len(copied), len(wanting),
                    _names(copied))
    elif copied:
        log.info("%s: copied the weights of all %d layers with parameters", where, len(copied))


def _names(names, most=6):
    shown = ", ".join(names[:most])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > most else shown or "none"


def _fit_shape(array, shape, where, layer_name, index):
    """Accept the source shape if it equals the target, or is Caffe's legacy 4-D form of it."""
    if array.shape == tuple(shape):
        return array
    legacy = (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None
    if legacy is not None and array.shape == legacy:
        return array.reshape(shape)
    raise ConfnetError(
        f"{where}: cannot copy param {index} of layer '{layer_name}': shape "
        f"{' '.join(map(str, array.shape))} in the weights, {' '.join(map(str, shape))} in "
        "the net; to learn this layer from scratch instead, rename it")


# -- NetState filtering --------------------------------------------------------------------------
def rule_matches(rule, state):
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def layer_included(lp, state):
    if lp.include and lp.exclude:
        raise ConfnetError(f"layer '{lp.name}': specify include or exclude rules, not both")
    if lp.include:
        return any(rule_matches(r, state) for r in lp.include)
    return not any(rule_matches(r, state) for r in lp.exclude)


def filter_layers(param, state):
    return [lp for lp in param.layer if layer_included(lp, state)]


# -- Split insertion -----------------------------------------------------------------------------
def split_layer_name(blob, layer, index):
    return f"{blob}_{layer}_{index}_split"


def split_blob_name(blob, layer, index, k):
    return f"{blob}_{layer}_{index}_split_{k}"


def insert_splits(layer_params):
    """Copy of ``layer_params`` with a Split layer after every top that feeds several bottoms.

    Names follow Caffe, so nets and weights written by either tool line up.
    """
    producer = {}      # blob name -> (layer index, top index) of its current producer
    consumers = {}     # (layer index, top index) -> number of bottoms reading it
    for i, lp in enumerate(layer_params):
        for name in lp.bottom:
            if name in producer:
                key = producer[name]
                consumers[key] = consumers.get(key, 0) + 1
        for j, name in enumerate(lp.top):
            producer[name] = (i, j)
    out, producer, used = [], {}, {}
    for i, lp in enumerate(layer_params):
        lp = _copy(lp)
        for b, name in enumerate(lp.bottom):
            key = producer.get(name)
            if key is not None and consumers.get(key, 0) > 1:
                src = layer_params[key[0]]
                k = used[key] = used.get(key, -1) + 1
                lp.bottom[b] = split_blob_name(name, src.name, key[1], k)
        out.append(lp)
        for j, name in enumerate(lp.top):
            producer[name] = (i, j)
            n = consumers.get((i, j), 0)
            if n > 1:
                out.append(pb.LayerParameter(
                    name=split_layer_name(name, lp.name, j), type="Split", bottom=[name],
                    top=[split_blob_name(name, lp.name, j, k) for k in range(n)]))
    return out


def _own_storage(blob):
    """Fresh data and diff arrays for ``blob`` alone."""
    return SyncedArray(blob.count, blob.dtype), SyncedArray(blob.count, blob.dtype)


def _copy_net(net):
    new = pb.NetParameter()
    new.CopyFrom(net)
    return new


def _copy(lp):
    new = pb.LayerParameter()
    new.CopyFrom(lp)
    return new
