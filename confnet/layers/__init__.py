"""Layers: one module per layer type, named after it (relu.py for "ReLU"), each registering
itself; shared bases (base.py, neuron.py, elementwise.py, ...) beside them.

Importing this package imports every module in it, so adding a layer means adding its file.
"""

import importlib
import pkgutil

from .base import TEST, TRAIN, Layer, LossLayer
from .registry import create_layer, known_types, layer_class, register_layer

_INFRASTRUCTURE = {"base", "registry"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["TEST", "TRAIN", "Layer", "LossLayer", "create_layer", "known_types", "layer_class",
           "register_layer"]
