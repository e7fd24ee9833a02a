"""Python: a layer written by the user in Python, named in the net definition (pycaffe's
PythonLayer).

A net definition that names Python code runs that code, so loading one is refused unless the
user allows it: ``confnet train --allow-python-layers`` or, from Python,
``confnet.layers.python_layer.allow_python_layers()``.
"""

import contextlib
import importlib
import inspect
import os
import sys

from .base import Layer
from .registry import register_layer

_allowed = False


def allow_python_layers(flag=True):
    """Allow (or, with flag=False, forbid again) nets to load the Python layers they name."""
    global _allowed
    _allowed = bool(flag)


@contextlib.contextmanager
def python_layers_allowed():
    """Allow Python layers while the block runs, then restore the previous setting (for
    confnet.caffe, whose nets may always load them, as pycaffe's do)."""
    global _allowed
    saved, _allowed = _allowed, True
    try:
        yield
    finally:
        _allowed = saved


@register_layer("Python")
class Python(Layer):
    """Runs python_param.layer, a class of module python_param.module, with pycaffe's interface:

        setup(bottom, top)          once (optional)
        reshape(bottom, top)        before every forward
        forward(bottom, top)
        backward(top, propagate_down, bottom)

    The instance has ``param_str`` (python_param.param_str), ``phase`` (0 TRAIN, 1 TEST) and
    ``blobs``, its learnable blobs (``self.blobs.add_blob(*shape)`` adds one). Blobs are shown as
    pycaffe shows them: ``data``, ``diff``, ``shape``, ``count``, ``num``/``channels``/
    ``height``/``width`` and ``reshape(*dims)``. The module is imported by name from sys.path and
    the current folder; the class is built with the LayerParameter when its constructor takes an
    argument, else with none. The math, shapes and gradient are the user's; backward follows this
    project's rule (overwrite bottom diffs, add to parameter diffs).

    In a device run the user's code runs on the host through the base class's fallback (logged
    once): the blobs' synced memory copies each bottom (forward) and top diff (backward) to the
    host once when the code reads it, and each top and bottom diff it writes back once when a
    device layer reads it. As in pycaffe, ``.data``/``.diff`` are writable, so a bottom the code
    reads that way counts as changed on the host and is copied back once too.
    """

    params = ("python_param",)
    host_only = True   # file output / user code: the host by design

    def layer_setup(self, bottom, top):
        p = self.param.python_param
        self.require(_allowed, f"loading Python code from a net (module '{p.module}', class "
                               f"'{p.layer}') is not allowed; if you trust it, pass "
                               "--allow-python-layers (CLI) or call "
                               "confnet.layers.python_layer.allow_python_layers()")
        self.require(p.module and p.layer, "python_param needs both 'module' and 'layer'")
        cls = self._load_class(p.module, p.layer)
        for method in ("reshape", "forward"):
            self.require(callable(getattr(cls, method, None)),
                         f"class '{p.layer}' of module '{p.module}' has no {method}() method")
        self.blobs = _BlobVector(self)
        self.impl = cls(self.param) if _takes_argument(cls) else cls()
        self.impl.param_str = p.param_str
        self.impl.phase = self.phase
        self.impl.blobs = self.blobs
        if hasattr(self.impl, "setup"):
            self.impl.setup(bottom, top)

    def _load_class(self, module_name, class_name):
        folder = os.getcwd()
        added = folder not in sys.path
        if added:
            sys.path.append(folder)
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            self.fail(f"cannot import python_param.module '{module_name}' ({e}); it is looked "
                      "for on sys.path and in the current folder")
        finally:
            if added:
                sys.path.remove(folder)
        cls = getattr(module, class_name, None)
        self.require(inspect.isclass(cls),
                     f"module '{module_name}' ({getattr(module, '__file__', '?')}) has no class "
                     f"'{class_name}'")
        return cls

    def reshape(self, bottom, top):
        self.impl.reshape(bottom, top)

    def forward_cpu(self, bottom, top):
        self.impl.forward(bottom, top)

    def backward_cpu(self, top, propagate_down, bottom):
        self.require(callable(getattr(self.impl, "backward", None)),
                     f"class '{self.param.python_param.layer}' has no backward() method, but "
                     "a gradient is needed through it")
        self.impl.backward(top, list(propagate_down), bottom)


def _takes_argument(cls):
    try:
        return bool(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return False


class _BlobVector(list):
    """The layer's learnable blobs, as pycaffe's ``self.blobs`` (a list with ``add_blob``)."""

    def __init__(self, layer):
        super().__init__()
        self._layer = layer

    def add_blob(self, *dims):
        blob = self._layer.new_blob(())
        blob.reshape(*dims)
        self.append(blob)


