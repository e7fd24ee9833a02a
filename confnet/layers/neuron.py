"""Neuron: the base of layers with one bottom and one top of the same shape (Caffe's NeuronLayer).

The element-wise activations (``elementwise.py`` and one module per type: relu.py, sigmoid.py,
...), PReLU, Dropout, MVN and BatchNorm build on it. Each may be computed in place (top is the same
Blob as bottom); a layer whose backward needs the input x then keeps a copy of it, since forward
overwrites it with y.
"""

from .base import Layer


class Neuron(Layer):
    """Base for element-wise layers: one bottom, one top of the same shape, in place allowed."""

    num_bottom = num_top = 1
    kept = None   # layer-owned copy of x made by keep_input when computing in place

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])

    def keep_input(self, bottom, top):
        """Before forward: when in place, copy x into a layer-owned blob (on the layer's side,
        host or device) so that backward still sees it after forward overwrites it with y."""
        if top[0] is bottom[0]:
            if self.kept is None:
                self.kept = self.new_blob()
            self.kept.reshape_like(bottom[0])
            self.kept.copy_from(bottom[0])

    def kept_input(self, bottom, top):
        """In backward: the blob that holds the x of forward (bottom 0, or keep_input's copy)."""
        return self.kept if top[0] is bottom[0] else bottom[0]
