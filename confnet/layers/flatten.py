"""Flatten: merge a range of axes into one; and the base of layers that only view their bottom."""

from .base import Layer
from .registry import register_layer


class View(Layer):
    """A top that views its bottom's data and diff with another shape (``top_shape``), so that
    forward and backward move nothing, on the host and on the device. Not in place."""

    num_bottom = num_top = 1
    has_gpu = True

    def top_shape(self, bottom):
        raise NotImplementedError(f"{type(self).__name__}.top_shape")

    def reshape(self, bottom, top):
        self.require(bottom[0] is not top[0], "cannot be computed in place")
        shape = self.top_shape(bottom[0])
        top[0].share_data(bottom[0], shape)
        top[0].share_diff(bottom[0], shape)

    def forward_cpu(self, bottom, top):
        """Nothing to compute: the top views the bottom's data."""

    def backward_cpu(self, top, propagate_down, bottom):
        """Nothing to compute: the bottom's diff is the top's."""

    def forward_gpu(self, bottom, top):
        """Nothing to compute: the top views the bottom's device memory too."""

    def backward_gpu(self, top, propagate_down, bottom):
        """Nothing to compute: the bottom's diff is the top's."""


@register_layer("Flatten")
class Flatten(View):
    """y = x viewed with axes axis..end_axis (inclusive, default 1..-1) merged into one.

    bottom: 1 blob, shape (d0, .., dn).   top: 1 blob, shape
    (d0, .., d[axis-1], d[axis] * .. * d[end_axis], d[end_axis+1], .., dn); not in place.
    backward: dx = dy (the top views the bottom's data and diff; nothing moves).
    """

    params = ("flatten_param",)

    def top_shape(self, b):
        fp = self.param.flatten_param
        start, end = b.canonical_axis(fp.axis), b.canonical_axis(fp.end_axis)
        self.require(start <= end, f"axis {fp.axis} comes after end_axis {fp.end_axis} for "
                     f"a bottom of shape {b.shape}")
        return b.shape[:start] + (b.count_range(start, end + 1),) + b.shape[end + 1:]
