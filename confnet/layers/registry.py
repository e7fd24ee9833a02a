"""The layer registry: maps a prototxt ``type`` string to the Layer class that implements it.

A layer module registers its class with one line, ``@register_layer("ReLU")``. Registering a name
twice is an error; asking for an unknown name lists every known one.
"""

from ..errors import ConfnetError

_LAYERS = {}


def register_layer(type_name):
    def decorate(cls):
        if type_name in _LAYERS:
            raise ValueError(f"layer type '{type_name}' is registered twice "
                             f"({_LAYERS[type_name].__module__} and {cls.__module__})")
        _LAYERS[type_name] = cls
        cls.type_name = type_name
        return cls
    return decorate


def known_types():
    return sorted(_LAYERS)


def layer_class(type_name, layer_name="?"):
    try:
        return _LAYERS[type_name]
    except KeyError:
        raise ConfnetError(
            f"layer '{layer_name}': unknown layer type '{type_name}'; "
            f"known types: {', '.join(known_types())}") from None


def create_layer(param, phase, dtype=None):
    """Build the layer described by a LayerParameter for the given phase (TRAIN or TEST)."""
    cls = layer_class(param.type, param.name)
    return cls(param, phase) if dtype is None else cls(param, phase, dtype)
