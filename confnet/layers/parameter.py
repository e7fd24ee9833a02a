"""Parameter: a learnable blob offered as a top, for nets that use a weight as data."""

from ..gpu import blas
from .base import Layer
from .registry import register_layer


@register_layer("Parameter")
class Parameter(Layer):
    """y = P, a learnable blob of shape parameter_param.shape (no shape: a scalar), zero at
    start (Caffe has no filler for it; it is learned or loaded from a .caffemodel).

    bottom: none.   top: 1 blob of P's shape; it views P's data, as Caffe's ShareData.
    backward: dP += dy. (Caffe also shares the diff, so a consumer overwrites dP; adding keeps
    the gradients of shared parameters and of iter_size passes accumulating.)
    Device: the same sharing, and dP += dy with blas.axpy.
    """

    params = ("parameter_param",)
    num_bottom, num_top = 0, 1
    has_gpu = True

    def layer_setup(self, bottom, top):
        self.shape = tuple(self.param.parameter_param.shape.dim)
        self.blobs.append(self.new_blob(self.shape))

    def reshape(self, bottom, top):
        top[0].reshape(self.shape)

    def forward_cpu(self, bottom, top):
        # Shared each time: the net may have replaced self.blobs[0] by a shared parameter.
        top[0].share_data(self.blobs[0])

    def backward_cpu(self, top, propagate_down, bottom):
        self.blobs[0].diff += top[0].diff

    def forward_gpu(self, bottom, top):
        self.forward_cpu(bottom, top)   # sharing touches no memory

    def backward_gpu(self, top, propagate_down, bottom):
        blas.axpy(top[0].count, 1, top[0].gpu_diff, self.blobs[0].mutable_gpu_diff)
