"""confnet: train Caffe-format networks in Python.

    import confnet
    net = confnet.Net("deploy.prototxt", phase=confnet.TEST, weights="model.caffemodel")
    solver = confnet.get_solver("solver.prototxt")
"""

from . import threads

threads.limit_blas_spin()   # first: before anything imports numpy (see confnet/threads.py)

from .errors import ConfnetError
from .layers import TEST, TRAIN
from .layers.python_layer import allow_python_layers
from .net import Net
from .solver import get_solver

__version__ = "0.1.0"
__all__ = ["TEST", "TRAIN", "ConfnetError", "Net", "allow_python_layers", "get_solver"]
