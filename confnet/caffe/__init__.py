"""pycaffe's public surface (BVLC Caffe 1.0's ``python/caffe``) on confnet.

A pycaffe script runs with its import changed:

    import confnet.caffe as caffe                  # instead of: import caffe
    from confnet.caffe import layers as L, params as P

Here: ``Net``, ``SGDSolver`` and the other solvers, ``get_solver``, ``Layer`` (the base of Python
layers), ``Blob``, ``TRAIN``/``TEST``, ``set_mode_cpu``/``set_mode_gpu``/``set_device``,
``set_random_seed``, ``layer_type_list``, ``Classifier``, ``Detector``, ``NetSpec``/``layers``/
``params``/``to_proto``, and the modules ``io``, ``net_spec``, ``classifier``, ``detector``,
``draw``, ``coord_map`` and ``proto.caffe_pb2``. ``import confnet`` does not load this package.
"""

import importlib
import importlib.util

from .. import rng
from ..blob import Blob
from ..errors import ConfnetError
from ..layers import known_types
from . import io
from .classifier import Classifier
from .detector import Detector
from .net_spec import NetSpec, layers, params, to_proto
from .proto.caffe_pb2 import TEST, TRAIN
from .pycaffe import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    Layer,
    NesterovSolver,
    Net,
    RMSPropSolver,
    SGDSolver,
    get_solver,
)

__version__ = "1.0.0"   # the pycaffe version whose interface this follows

_mode = {"gpu": False, "device": 0}


def _gpu_backend():
    """confnet's GPU backend module (confnet.gpu), or None where this confnet has none."""
    if importlib.util.find_spec("confnet.gpu") is None:
        return None
    return importlib.import_module("confnet.gpu")


def _require_gpu_backend(call):
    backend = _gpu_backend()
    if backend is None:
        raise ConfnetError(f"caffe.{call}: this confnet has no GPU backend; run on the CPU "
                           "with caffe.set_mode_cpu() (the default)")
    return backend


def set_mode_cpu():
    """Run nets on the CPU (the default)."""
    _mode["gpu"] = False
    backend = _gpu_backend()
    if backend is not None:
        backend.use(None)


def set_mode_gpu():
    """Run nets on the device chosen by set_device (GPU 0 unless chosen)."""
    backend = _require_gpu_backend("set_mode_gpu()")
    _mode["gpu"] = True
    backend.use(_mode["device"])


def set_device(device):
    """Choose the device for GPU mode: a GPU id, or "emu" for the CUDA-on-CPU emulator. As in
    Caffe, this does not switch to GPU mode by itself; set_mode_gpu() does."""
    backend = _require_gpu_backend(f"set_device({device!r})")
    _mode["device"] = device
    if _mode["gpu"]:
        backend.use(device)


def set_random_seed(seed):
    """Seed the generator fillers, dropout and data shuffling draw from."""
    rng.seed(seed)


def layer_type_list():
    """The layer type names a prototxt may use."""
    return known_types()


__all__ = [
    "TEST",
    "TRAIN",
    "AdaDeltaSolver",
    "AdaGradSolver",
    "AdamSolver",
    "Blob",
    "Classifier",
    "Detector",
    "Layer",
    "NesterovSolver",
    "Net",
    "NetSpec",
    "RMSPropSolver",
    "SGDSolver",
    "get_solver",
    "io",
    "layer_type_list",
    "layers",
    "params",
    "set_device",
    "set_mode_cpu",
    "set_mode_gpu",
    "set_random_seed",
    "to_proto",
]
