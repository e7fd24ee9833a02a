"""Split: hand one blob to several consumers, each with its own gradient."""

from .base import Layer
from .registry import register_layer


@register_layer("Split")
class Split(Layer):
    """y_i = x for every top i (the tops view the bottom's data; no copy).

    bottom: 1 blob, any shape.   top: 1 or more blobs, same shape, each with its own diff.
    backward: dx = sum_i dy_i.
    The net inserts a Split wherever one top feeds several bottoms.
    """

    num_bottom = 1
    min_top = 1
    has_gpu = True
    kernels = "split.cu"

    def reshape(self, bottom, top):
        for blob in top:
            self.require(blob is not bottom[0], "cannot be computed in place")
            blob.reshape_like(bottom[0])
            blob.share_data(bottom[0])

    def forward_cpu(self, bottom, top):
        """Nothing to compute: the tops already view the bottom's data."""

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            diff = bottom[0].diff
            diff[...] = top[0].diff
            for blob in top[1:]:
                diff += blob.diff

    def forward_gpu(self, bottom, top):
        """Nothing to compute: the tops share the bottom's device memory too."""

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = bottom[0]
        if len(top) == 1:
            x.copy_from(top[0], diff=True)
            return
        self.launch_1d("split_backward", x.count, top[0].gpu_diff, top[1].gpu_diff,
                       x.mutable_gpu_diff)
        for blob in top[2:]:
            self.launch_1d("split_backward_add", x.count, blob.gpu_diff, x.mutable_gpu_diff)
