"""Layer: the unit a net is made of.

Every layer has the same life cycle, so the net never special-cases one:

    layer = SomeLayer(layer_param, phase)
    layer.setup(bottom, top)        # check blob counts, create and fill parameter blobs, reshape
    layer.reshape(bottom, top)      # shape inference; runs again whenever input shapes change
    loss = layer.forward(bottom, top)
    layer.backward(top, propagate_down, bottom)

``forward``/``backward`` dispatch once to ``*_cpu`` or ``*_gpu``: to the device path while a
device backend is in use (``confnet.gpu``) and the layer has one (``has_gpu``), else to the host
path; a layer without a device path in a device run reads and writes host memory, and the blobs'
synced memory copies what it needs (logged once per layer type).

Contracts a layer implementation keeps:

- ``forward_cpu`` writes every top blob's data; ``forward_gpu`` does the same on the device
  through ``self.launch``/``self.launch_1d`` (kernels of the family file ``kernels`` in cuda/).
- ``backward_cpu`` *overwrites* the diff of each bottom whose ``propagate_down`` is true, and
  *adds* to the diff of its parameter blobs (``self.blobs``): the solver clears parameter diffs
  once per iteration, so gradients of shared parameters and of ``iter_size`` passes accumulate.
- A loss is the weighted sum of the tops that have a loss weight: ``sum_i w_i * sum(top_i)``.
  Before backward the net stores ``w_i`` in every element of the top's diff, so a loss layer
  scales its gradient by ``top[0].diff`` (a scalar blob). On the device the loss stays there:
  ``forward`` returns None and the net sums the loss tops on the device when asked.
- Buffers kept between forward and backward (columns, argmax, masks, probabilities) are
  layer-owned blobs (``new_blob``), so they live on the same side as the layer.
- Parameter messages: a layer lists the ``*_param`` fields of LayerParameter it reads in
  ``params``; any other one being set is an error rather than silently ignored.
"""

import logging

import numpy as np

from .. import gpu
from ..errors import ConfnetError

log = logging.getLogger("confnet")
_host_fallbacks = set()   # layer types already reported as running on the host in a device run

TRAIN, TEST = 0, 1

# Fields of LayerParameter that hold a layer-specific parameter message.
_COMMON_FIELDS = {"name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs",
                  "propagate_down", "include", "exclude"}


class Layer:
    """Base class. Subclasses set the class attributes below and override the hooks."""

    type_name = "?"           # set by @register_layer
    params = ()               # LayerParameter fields (``*_param``) this layer reads
    num_bottom = None         # exact number of bottoms, or None
    min_bottom, max_bottom = 0, None
    num_top = None            # exact number of tops, or None
    min_top, max_top = 0, None
    auto_top = False          # create the minimum number of tops when none are named (losses)
    default_loss_weight = 0.0  # loss weight of top[0] when the prototxt gives none
    has_gpu = False           # whether forward_gpu/backward_gpu exist
    kernels = None            # the family's kernel file in cuda/ ("neuron.cu")
    host_only = False         # runs on the host by design, also in a device run (files, Python)

    def __init__(self, param, phase=TRAIN, dtype=np.float32):
        self.param = param
        self.name = param.name
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.blobs = []
        self.loss_weights = []
        self._check_param_fields()

    @property
    def type(self):
        """The prototxt type name (pycaffe's ``layer.type``)."""
        return self.type_name

    # -- life cycle ------------------------------------------------------------------------------
    def setup(self, bottom, top):
        self._check_counts(bottom, top)
        self.layer_setup(bottom, top)
        self.reshape(bottom, top)
        self._set_loss_weights(top)

    def layer_setup(self, bottom, top):
        """One-time set up: read parameters, create self.blobs. Override when needed."""

    def reshape(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__}.reshape")

    def forward(self, bottom, top):
        """Run forward; return the weighted loss of the tops (a float), or None on the device,
        where the loss stays (the net sums it there)."""
        if self.on_device():
            self.forward_gpu(bottom, top)
            return None
        self.forward_cpu(bottom, top)
        loss = 0.0
        for blob, weight in zip(top, self.loss_weights):
            if weight:
                loss += weight * float(blob.cpu_data.sum())
        return loss

    def backward(self, top, propagate_down, bottom):
        if self.on_device():
            self.backward_gpu(top, propagate_down, bottom)
        else:
            self.backward_cpu(top, propagate_down, bottom)

    def on_device(self):
        """Whether this layer runs its device path now."""
        if gpu.current() is None or self.dtype != np.float32:
            return False
        if not self.has_gpu and self.type_name not in _host_fallbacks:
            _host_fallbacks.add(self.type_name)
            if self.host_only:
                log.info("%s layer '%s' runs on the host by design, reading its bottoms from the "
                         "device (and writing its tops back)", self.type_name, self.name)
            else:
                log.warning("%s layers have no device kernels yet: '%s' runs on the host, with "
                            "a copy each way", self.type_name, self.name)
        return self.has_gpu

    def prepare_pass(self):
        """Called by the solver before each forward/backward pass of a device run: set the
        values that change from pass to pass (a random seed) in the device's scalar table
        (confnet/gpu/graph.py), which the solver uploads in one copy; the pass may then run
        from a CUDA graph, where no Python runs. Most layers have none."""

    def forward_cpu(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__}.forward_cpu")

    def backward_cpu(self, top, propagate_down, bottom):
        """Default for layers that have nothing to back-propagate (data, accuracy)."""

    def forward_gpu(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__}.forward_gpu")

    def backward_gpu(self, top, propagate_down, bottom):
        """Default for layers that have nothing to back-propagate (data, accuracy)."""

    # -- kernels -----------------------------------------------------------------------------
    def launch_1d(self, name, n, *args):
        """Kernel ``name(int n, *args)`` of this layer's family file over ``n`` elements."""
        from ..gpu.launch import launch_1d
        launch_1d(self.kernels, name, n, *args)

    def launch_rows(self, name, rows, *args):
        """Kernel ``name(*args)`` of this layer's family file, one block per row of ``rows``."""
        from ..gpu.launch import launch_rows
        launch_rows(self.kernels, name, rows, *args)

    def launch(self, name, grid, block, *args, shared=0):
        """Kernel ``name(*args)`` of this layer's family file with explicit geometry."""
        from ..gpu.launch import launch
        launch(self.kernels, name, grid, block, *args, shared=shared)

    def allow_force_backward(self, bottom_index):
        """False for inputs no gradient can flow to (labels of a loss, for example)."""
        return True

    # -- helpers for subclasses -------------------------------------------------------------------
    def fail(self, message):
        raise ConfnetError(f"layer '{self.name}' ({self.type_name}): {message}")

    def require(self, condition, message):
        if not condition:
            self.fail(message)

    def new_blob(self, shape=(), dtype=None):
        """A blob this layer owns (a parameter, or a buffer kept between forward and backward)."""
        from ..blob import Blob
        return Blob(shape, dtype or self.dtype)

    def add_param_blob(self, shape, filler_param):
        """Create a learnable blob, filled unless the net will load it (given in the prototxt)."""
        from ..filler import fill
        blob = self.new_blob(shape)
        fill(blob.data, filler_param)
        self.blobs.append(blob)
        return blob

    # -- checks ------------------------------------------------------------------------------
    def _check_param_fields(self):
        for field, _ in self.param.ListFields():
            if field.name in _COMMON_FIELDS or field.name in self.params:
                continue
            self.fail(f"'{field.name}' is set, but a {self.type_name} layer does not use it; "
                      "remove it or fix the layer type")

    def _check_counts(self, bottom, top):
        self._check_count("bottom", len(bottom), self.num_bottom, self.min_bottom, self.max_bottom)
        self._check_count("top", len(top), self.num_top, self.min_top, self.max_top)

    def _check_count(self, kind, n, exact, low, high):
        if exact is not None and n != exact:
            self.fail(f"needs {exact} {kind} blob(s), got {n}")
        if n < low or (high is not None and n > high):
            bound = f"{low} to {high}" if high is not None else f"at least {low}"
            self.fail(f"needs {bound} {kind} blob(s), got {n}")

    def _set_loss_weights(self, top):
        weights = list(self.param.loss_weight)
        if weights and len(weights) != len(top):
            self.fail(f"has {len(weights)} loss_weight value(s) for {len(top)} top blob(s)")
        if not weights:
            weights = [self.default_loss_weight] + [0.0] * (len(top) - 1) if top else []
        self.loss_weights = [float(w) for w in weights]


class LossLayer(Layer):
    """Base for losses: bottom[0] predictions, bottom[1] targets; top[0] is a scalar loss."""

    params = ("loss_param",)
    min_bottom, max_bottom = 2, 3
    min_top, max_top = 1, 1
    auto_top = True
    default_loss_weight = 1.0

    input_names = {1: "labels"}   # what the inputs no gradient flows to hold, for errors

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def backward(self, top, propagate_down, bottom):
        """Refuse a gradient for an input no gradient can flow to (the labels), on either side."""
        for i, wanted in enumerate(propagate_down):
            if wanted and not self.allow_force_backward(i):
                what = self.input_names.get(i, "this input")
                self.fail(f"cannot back-propagate to the {what} (bottom[{i}])")
        super().backward(top, propagate_down, bottom)

    def reshape(self, bottom, top):
        self.require(bottom[0].shape[0] == bottom[1].shape[0],
                     f"bottom[0] and bottom[1] need the same first dimension, got "
                     f"{bottom[0].shape} and {bottom[1].shape}")
        top[0].reshape(())
