"""Input: tops whose values the caller sets (deploy nets, pycaffe-style ``net.blobs[...]``).

    top: one blob per ``top`` name, shaped by input_param.shape (one shape for all tops, or one
    per top). forward and backward do nothing.
"""

from .base import Layer
from .registry import register_layer


@register_layer("Input")
class Input(Layer):
    params = ("input_param",)
    num_bottom = 0
    min_top = 1
    has_gpu = True   # no kernel: the tops stay wherever the caller's set_data put them

    def layer_setup(self, bottom, top):
        shapes = self.param.input_param.shape
        self.require(len(shapes) in (1, len(top)),
                     f"give input_param one shape, or one per top ({len(top)}); got {len(shapes)}")
        self.shapes = [tuple(s.dim) for s in shapes] * (len(top) if len(shapes) == 1 else 1)
        for blob, shape in zip(top, self.shapes):
            blob.reshape(shape)

    def reshape(self, bottom, top):
        """Keep whatever shape the caller gave the tops."""

    def forward_cpu(self, bottom, top):
        """The caller has written the tops' data."""

    def forward_gpu(self, bottom, top):
        """The caller has written the tops' data (``Blob.set_data`` copies it to the device)."""
