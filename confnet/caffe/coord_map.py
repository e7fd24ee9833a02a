"""pycaffe's ``caffe.coord_map``: how coordinates move through a NetSpec net, and the Crop layer
that aligns one top with another (as fully convolutional nets crop an upsampled score map to
the input).

A layer's map is (axis, a, b): a position x in its bottom lies at y = a * x + b in its top,
along every spatial axis from ``axis`` on (None: any axis, for layers that keep positions):

    Convolution, Pooling, Im2col   a = 1 / stride,  b = (pad - (k_eff - 1) / 2) / stride
    Deconvolution                  a = stride,      b = (k_eff - 1) / 2 - pad
    Crop                           a = 1,           b = -offset
    elementwise layers (ReLU, ...) a = 1,           b = 0

with k_eff = (kernel_size - 1) * dilation + 1, the span of a dilated kernel. Along a path the
maps compose: a bottom-to-top map (a2, b2) followed by the top's own map to a later blob
(a1, b1) gives (a1 * a2, a1 * b2 + b1).
"""

from collections import OrderedDict, deque

import numpy as np

from ..errors import ConfnetError
from .net_spec import layers as L

# Layers whose top has the same positions as their bottom.
PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log",
                       "LRN", "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid",
                       "Split", "TanH", "Threshold", "Clip", "Swish"]
_WINDOWED = {"Convolution": "convolution_param", "Im2col": "convolution_param",
             "Pooling": "pooling_param", "Deconvolution": "convolution_param"}
_LEGACY_FIELDS = {"pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w"}


class UndefinedMapException(ConfnetError):
    """The layer moves positions in a way no (a, b) map describes (InnerProduct, say)."""


class AxisMismatchException(ConfnetError):
    """Two maps along one path act on different first axes."""


def _fields(fn, message):
    """The layer's keywords for ``message``: those passed inside it, else the flat ones."""
    fields = fn.params.get(message, fn.params)
    if _LEGACY_FIELDS & set(fields):
        raise ConfnetError(f"{fn.type_name}: coordinate maps need kernel_size/stride/pad, not "
                           f"the legacy {', '.join(sorted(_LEGACY_FIELDS & set(fields)))}")
    return fields


def conv_params(fn):
    """(axis, stride, effective kernel span, pad) of a Convolution/Pooling/Deconvolution
    layer, as arrays (one value, or one per spatial axis)."""
    fields = _fields(fn, _WINDOWED[fn.type_name])
    if "kernel_size" not in fields:
        raise ConfnetError(f"{fn.type_name}: a coordinate map needs its kernel_size")
    kernel = np.array(fields["kernel_size"], ndmin=1)
    dilation = np.array(fields.get("dilation", 1), ndmin=1)
    return (fields.get("axis", 1), np.array(fields.get("stride", 1), ndmin=1),
            (kernel - 1) * dilation + 1, np.array(fields.get("pad", 0), ndmin=1))


def crop_params(fn):
    """(axis, offset) of a Crop layer; Caffe's default axis is 2, the first spatial one."""
    fields = _fields(fn, "crop_param")
    return fields.get("axis", 2), np.array(fields.get("offset", 0), ndmin=1)


def coord_map(fn):
    """The (axis, a, b) map of one layer (see the module docstring). The axis is counted from
    the first spatial one: 1 for Convolution's default axis 1 (channels) means spatial axis 0
    is H, as in pycaffe."""
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, span, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (span - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, span, pad = conv_params(fn)
        return axis, stride, (span - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset
    raise UndefinedMapException(f"no coordinate map through a {fn.type_name} layer")


def compose(base_map, next_map):
    """``base_map`` (top -> target) after ``next_map`` (bottom -> top): bottom -> target."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is not None and ax2 is not None and ax1 != ax2:
        raise AxisMismatchException(f"coordinate maps on axes {ax1} and {ax2} do not compose")
    return (ax2 if ax1 is None else ax1), a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """The map back: y = a x + b gives x = y / a - b / a."""
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _mapped_bottoms(top):
    """The bottoms whose positions a top's layer maps: all, except a Crop's reference
    bottom (its second), which only gives a size."""
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == "Crop" else inputs


def _ancestor_maps(top):
    """{ancestor top: map from that ancestor's positions to ``top``'s}, over the paths of
    mappable layers (a layer without a map ends its path), nearest ancestors first."""
    maps = OrderedDict([(top, (None, 1, 0))])
    frontier = deque([top])
    while frontier:
        current = frontier.popleft()
        try:
            step = coord_map(current.fn)
        except UndefinedMapException:
            continue
        for bottom in _mapped_bottoms(current):
            if bottom not in maps:
                maps[bottom] = compose(maps[current], step)
                frontier.append(bottom)
    return maps


def coord_map_from_to(top_from, top_to):
    """The (axis, a, b) map taking positions in ``top_from`` to positions in ``top_to``, through
    the common ancestor nearest to ``top_to``."""
    from_maps = _ancestor_maps(top_from)
    for top, to_map in _ancestor_maps(top_to).items():
        if top in from_maps:
            return compose(to_map, inverse(from_maps[top]))
    raise ConfnetError("cannot map coordinates between the two tops: they share no ancestor "
                       "through spatial layers (Convolution, Pooling, Crop, elementwise ...)")


def crop(top_from, top_to):
    """A Crop layer cutting ``top_from`` to the positions of ``top_to`` (a NetSpec top)."""
    ax, a, b = coord_map_from_to(top_from, top_to)
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    if not (a == 1).all():
        raise ConfnetError(f"crop: the tops differ in scale (a = {a}); crop needs scale 1")
    if not (b <= 0).all():
        raise ConfnetError(f"crop: negative offset (b = {b}): the 'from' top lies inside the "
                           "'to' top, there is nothing to crop away")
    if not (np.round(b) == b).all():
        raise ConfnetError(f"crop: offset b = {b} is not a whole number of positions")
    offset = [int(v) for v in -np.round(b)]
    return L.Crop(top_from, top_to, crop_param={"axis": 2 if ax is None else ax + 1,
                                                    "offset": offset})
