"""Reshape: view a blob with another shape."""

import math

from .flatten import View
from .registry import register_layer


@register_layer("Reshape")
class Reshape(View):
    """y = x viewed with a new shape: the bottom axes [axis, axis + num_axes) (default: all)
    are replaced by reshape_param.shape, where a dimension 0 copies the bottom dimension at
    the same position and a single -1 is inferred from the count. A negative axis counts from
    the end, -1 meaning after the last axis; num_axes -1 means up to the last axis.

    bottom: 1 blob.   top: 1 blob with the same count; not in place.
    backward: dx = dy (the top views the bottom's data and diff; nothing moves).
    """

    params = ("reshape_param",)

    def layer_setup(self, bottom, top):
        dims = list(self.param.reshape_param.shape.dim)
        self.require(all(d >= -1 for d in dims), f"shape {dims} has a dimension below -1")
        self.require(dims.count(-1) <= 1, f"shape {dims} has more than one -1")
        self.dims = dims

    def top_shape(self, b):
        rp = self.param.reshape_param
        start = rp.axis if rp.axis >= 0 else b.num_axes + rp.axis + 1
        self.require(0 <= start <= b.num_axes,
                     f"axis {rp.axis} out of range for a bottom of shape {b.shape}")
        self.require(rp.num_axes >= -1, f"num_axes must be >= 0, or -1 for all; got {rp.num_axes}")
        end = b.num_axes if rp.num_axes == -1 else start + rp.num_axes
        self.require(end <= b.num_axes, f"axis {rp.axis} + num_axes {rp.num_axes} goes past "
                     f"the last axis of a bottom of shape {b.shape}")
        new = list(self.dims)
        for i, d in enumerate(new):
            if d == 0:
                self.require(start + i < b.num_axes, f"shape {self.dims} has a 0 at position {i}, "
                             f"but the bottom (shape {b.shape}) has no axis {start + i} to copy")
                new[i] = b.shape[start + i]
        outside = b.count_range(0, start) * b.count_range(end)
        if -1 in new:
            known = outside * math.prod(d for d in new if d != -1)
            self.require(known > 0 and b.count % known == 0,
                         f"bottom count {b.count} (shape {b.shape}) is not divisible by the "
                         f"product {known} of the other dimensions of the output")
            new[new.index(-1)] = b.count // known
        shape = b.shape[:start] + tuple(new) + b.shape[end:]
        self.require(outside * math.prod(new) == b.count,
                     f"output shape {shape} does not have the bottom's count {b.count} "
                     f"(bottom shape {b.shape})")
        return shape
