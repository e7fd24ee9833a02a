"""pycaffe's Net, solvers and Python-layer base class, on confnet's Net and Solver.

confnet's ``Net`` already has pycaffe's ``blobs``, ``params``, ``layers``, ``layer_dict``,
``inputs``/``outputs``, ``top_names``/``bottom_names``, ``forward``/``backward`` (with
``start``/``end``/``blobs``/``diffs``), ``reshape``, ``copy_from``, ``save`` and ``save_hdf5``.
This module adds what pycaffe builds on top in Python: ``forward_all``,
``forward_backward_all``, ``share_with``, ``load_hdf5``, ``set_input_arrays`` and
``blob_loss_weights``; and it gives each optimizer pycaffe's solver class (``SGDSolver(path)``)
with ``add_callback`` and ``share_weights``.
"""

import functools
import itertools
import os
from collections import OrderedDict, namedtuple

import numpy as np

from .. import net as _net
from ..errors import ConfnetError
from ..layers import TRAIN
from ..layers.python_layer import python_layers_allowed
from ..proto import confnet_pb2 as pb
from ..proto import hdf5, io
from ..solver import solver_class


class Net(_net.Net):
    """pycaffe's ``caffe.Net``. Constructor forms, as pycaffe's:

        Net(prototxt, phase, level=0, stages=None, weights=None)
        Net(prototxt, weights, phase)

    A net built here may load the Python layers its definition names (pycaffe's nets always
    may; plain ``confnet.Net`` asks for ``allow_python_layers`` first).

    Differences from pycaffe, on purpose: ``forward(**inputs)`` accepts any subset of the inputs
    and reshapes the net to a new batch size, where pycaffe raises "Input is not batch sized".
    """

    def __init__(self, source, phase=TRAIN, level=0, stages=None, weights=None, **kwargs):
        with python_layers_allowed():
            super().__init__(source, phase, level, stages or (), weights, **kwargs)

    # pycaffe's private name lists, which scripts use (list(net._layer_names)).
    @property
    def _layer_names(self):
        return list(self.layer_names)

    @property
    def _blob_names(self):
        return list(self.blobs)

    @property
    def blob_loss_weights(self):
        """{blob name: loss weight}, 0 for blobs that are not a loss (Caffe's rule: a top
        rewritten in place takes the weight of its last writer)."""
        weights = OrderedDict((name, 0.0) for name in self.blobs)
        for layer, tops in zip(self.layers, self.top_ids):
            for name, weight in zip(tops, layer.loss_weights):
                weights[name] = weight
        return weights

    def share_with(self, other):
        """Use ``other``'s parameter data for every layer of the same name (no copy)."""
        self.share_weights_from(other)

    def load_hdf5(self, path):
        """Copy weights by layer name from a file in Caffe's HDF5 layout, whatever its name."""
        self.copy_layers(hdf5.read_weights(path), path)

    def set_input_arrays(self, data, labels):
        """Serve ``data`` (N, C, H, W) and ``labels`` (N,) through the net's MemoryData layer.

        pycaffe requires the MemoryData layer to be the first; here it is the first MemoryData
        layer wherever it is. Float32 C-contiguous arrays are used without a copy, as pycaffe
        does, so keep them alive and unchanged while the net reads them.
        """
        layer = next((lay for lay in self.layers if lay.type == "MemoryData"), None)
        if layer is None:
            raise ConfnetError(f"net '{self.name}': set_input_arrays needs a MemoryData layer "
                               "and this net has none; for an Input layer, pass the arrays "
                               "to net.forward(data=...) instead")
        layer.reset(data, labels)

    # -- whole data sets through the net, one batch at a time ------------------------------
    def _batch(self, arrays):
        """{name: chunk} dicts cutting every array of ``arrays`` into batches of the size of
        the blob of that name; the last batch is padded with zeros to the full size."""
        if not arrays:
            return
        lengths = {name: len(array) for name, array in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ConfnetError(f"net '{self.name}': the arrays differ in length: "
                               + ", ".join(f"{k} {v}" for k, v in lengths.items()))
        total = next(iter(lengths.values()))
        shape = self.blobs[next(iter(arrays))].shape
        size = (shape[0] if shape else 0) or total     # a blob without a batch axis: one go
        for start in range(0, total, size):
            chunk = {}
            for name, array in arrays.items():
                part = np.asarray(array[start:start + size])
                if len(part) < size:
                    pad = np.zeros((size - len(part),) + part.shape[1:], part.dtype)
                    part = np.concatenate([part, pad])
                chunk[name] = part
            yield chunk

    def forward_all(self, blobs=None, **inputs):
        """Run all of ``inputs`` (arrays of N items per input blob) through the net in batches of
        the net's batch size; returns {blob: array of N rows} for the outputs and ``blobs``.

        Without inputs, one forward pass (a net with data layers). An output with no batch axis
        (a scalar loss) gives one value per batch.
        """
        names = _unique(self.outputs + list(blobs or ()))
        parts = {name: [] for name in names}
        batches = self._batch(inputs) if inputs else iter([{}])
        for batch in batches:
            _collect(parts, self.forward(blobs=blobs, **batch))
        return _package(parts, _length(inputs))

    def forward_backward_all(self, blobs=None, diffs=None, **arrays):
        """forward_all and backward together: keywords naming input blobs are fed forward,
        keywords naming output blobs are their diffs fed backward, batch by batch.

        Returns ({blob: data rows} for the outputs and ``blobs``, {blob: diff rows} for the
        inputs and ``diffs``). pycaffe packages and trims only as many diff entries as there
        are output entries (it zips the two dicts); here every entry is packaged and trimmed.
        """
        unknown = [f"'{k}'" for k in arrays if k not in self.inputs and k not in self.outputs]
        if unknown:
            raise ConfnetError(f"net '{self.name}': {', '.join(unknown)} is neither an input "
                               f"({', '.join(self.inputs) or 'none'}) nor an output "
                               f"({', '.join(self.outputs) or 'none'})")
        forward = {k: v for k, v in arrays.items() if k in self.inputs}
        backward = {k: v for k, v in arrays.items() if k in self.outputs}
        outs = {name: [] for name in _unique(self.outputs + list(blobs or ()))}
        grads = {name: [] for name in _unique(self.inputs + list(diffs or ()))}
        for fb, bb in itertools.zip_longest(self._batch(forward), self._batch(backward),
                                            fillvalue={}):
            _collect(outs, self.forward(blobs=blobs, **fb))
            _collect(grads, self.backward(diffs=diffs, **bb))
        total = _length(arrays)
        return _package(outs, total), _package(grads, total)


def _unique(names):
    return list(dict.fromkeys(names))


def _length(arrays):
    return len(next(iter(arrays.values()))) if arrays else None


def _collect(parts, result):
    for name in parts:
        parts[name].append(np.array(result[name], copy=True))


def _package(parts, total):
    """Concatenate each blob's batches and drop the padding rows past ``total``."""
    out = {}
    for name, chunks in parts.items():
        if chunks and chunks[0].ndim == 0:
            out[name] = np.stack(chunks)
        else:
            out[name] = np.concatenate(chunks)[:total] if chunks else np.empty(0)
    return out


# -- solvers --------------------------------------------------------------------------------
_Callback = namedtuple("_Callback", "on_start on_gradients_ready")


class _PycaffeSolver:
    """pycaffe's solver interface, mixed into each confnet optimizer class.

    ``XSolver(path)`` (or a SolverParameter) builds optimizer X from the solver file. pycaffe
    silently runs X whatever the file's ``type`` says; a file naming another type is refused
    here, because the update rule would not be the one the file asks for.
    Inherited from confnet's Solver, as in pycaffe: ``net``, ``test_nets``, ``iter``,
    ``param``, ``step(n)``, ``solve(resume_file=None)``, ``snapshot()``, ``restore(path)``,
    ``apply_update()``.
    """

    net_class = Net
    share_test_blobs = False   # pycaffe scripts read test_nets[i].blobs: keep every blob

    def __init__(self, source, solver_path=None):
        if isinstance(source, (str, os.PathLike)):
            param, solver_path = io.read_solver(str(source)), str(source)
        else:
            param = pb.SolverParameter()
            param.CopyFrom(source)
        if param.HasField("type") and param.type != self.type_name:
            raise ConfnetError(f"{solver_path or 'solver'}: type is '{param.type}', but "
                               f"{type(self).__name__} was asked for; use "
                               f"{param.type}Solver or caffe.get_solver")
        param.type = self.type_name
        super().__init__(param, solver_path)

    def add_callback(self, on_start, on_gradients_ready):
        """Call ``on_start()`` every iteration before forward (after any testing), and
        ``on_gradients_ready()`` after backward, before the update (Caffe's Solver::Callback)."""
        self.callbacks.append(_Callback(on_start, on_gradients_ready))

    def share_weights(self, net):
        """Make ``net`` use this solver's train-net weights (pycaffe's share_weights)."""
        net.share_with(self.net)


@functools.cache
def pycaffe_solver_class(type_name):
    """pycaffe's solver class for the optimizer named ``type_name`` (SGD -> SGDSolver)."""
    base = solver_class(type_name)
    return type(f"{type_name}Solver", (_PycaffeSolver, base),
                {"__module__": __name__,
                 "__doc__": f"pycaffe's {type_name}Solver: {(base.__doc__ or '').strip()}"})


SGDSolver = pycaffe_solver_class("SGD")
NesterovSolver = pycaffe_solver_class("Nesterov")
AdaGradSolver = pycaffe_solver_class("AdaGrad")
RMSPropSolver = pycaffe_solver_class("RMSProp")
AdaDeltaSolver = pycaffe_solver_class("AdaDelta")
AdamSolver = pycaffe_solver_class("Adam")


def get_solver(source):
    """The solver of the type a solver file (or SolverParameter) names."""
    if isinstance(source, (str, os.PathLike)):
        param, path = io.read_solver(str(source)), str(source)
    else:
        param, path = source, None
    return pycaffe_solver_class(param.type)(param, path)


# -- Python layers --------------------------------------------------------------------------
class Layer:
    """The base class of Python layers (pycaffe's ``caffe.Layer``).

    A subclass defines ``setup(bottom, top)`` (optional), ``reshape(bottom, top)``,
    ``forward(bottom, top)`` and, when a gradient must pass through it,
    ``backward(top, propagate_down, bottom)``; a missing one is reported by name when the net
    needs it. When the net builds the layer, ``param_str``, ``phase`` and ``blobs`` (its
    learnable blobs, with ``add_blob(*shape)``) are set, as in pycaffe.
    """

    def __init__(self, param=None):
        self.param = param
        self.param_str = param.python_param.param_str if param is not None else ""
        self.blobs = []

    @property
    def type(self):
        return "Python"

    def setup(self, bottom, top):
        """Nothing to set up unless the subclass says so."""
