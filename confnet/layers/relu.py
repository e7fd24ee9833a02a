"""ReLU: the rectified linear unit, with an optional slope for negative inputs (leaky ReLU)."""

import numpy as np

from ..threads import elementwise
from .neuron import Neuron
from .registry import register_layer


@register_layer("ReLU")
class ReLU(Neuron):
    """y = max(x, 0) + negative_slope * min(x, 0)

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: dx = dy where x > 0, else negative_slope * dy (x = 0 takes the slope, as Caffe).
    In place the bottom data holds y afterwards, which is > 0 exactly where x > 0 as long as
    negative_slope >= 0; for a negative slope in place, forward keeps the mask x > 0 (Caffe's
    gradient is wrong there).

    Fused (``fused``, set by the net in confnet/net.py when this ReLU is in place with slope 0
    right after a Convolution or InnerProduct whose device forward applies it): the device
    forward does nothing; backward is unchanged, as it reads y, which is max(x, 0) either way.
    """

    params = ("relu_param",)
    has_gpu = True
    kernels = "neuron.cu"

    def layer_setup(self, bottom, top):
        self.slope = float(self.param.relu_param.negative_slope)
        self.positive = None
        self.mask = None   # device: the mask x > 0 of an in-place ReLU with a negative slope
        self.fused = False   # set by the net: the layer below applies this ReLU on the device

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        if not self.slope:
            # The plain ReLU as one in-place ufunc (np.where would allocate three temporaries),
            # split over confnet's workers.
            elementwise(lambda y, x: np.maximum(x, 0, out=y), top[0].data, x)
            return
        positive = x > 0
        self.positive = positive if self.slope < 0 and bottom[0] is top[0] else None
        top[0].data[...] = np.where(positive, x, x * self.slope)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].diff
        if not self.slope:
            elementwise(lambda dx, dy, x: np.multiply(dy, x > 0, out=dx), bottom[0].diff, dy,
                        bottom[0].data)
            return
        positive = self.positive if self.positive is not None else bottom[0].data > 0
        bottom[0].diff[...] = np.where(positive, dy, dy * self.slope)

    def forward_gpu(self, bottom, top):
        if self.fused:
            return
        x = bottom[0]
        # In place with a negative slope, y no longer tells the sign of x: keep the mask x > 0.
        if self.slope < 0 and x is top[0]:
            if self.mask is None:
                self.mask = self.new_blob()
            self.mask.reshape_like(x)
        self.launch_1d("relu_forward", x.count, x.gpu_data, top[0].mutable_gpu_data,
                       np.float32(self.slope),
                       self.mask.mutable_gpu_data if self.mask is not None else 0)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            sign = self.mask if self.mask is not None else bottom[0]
            self.launch_1d("relu_backward", bottom[0].count, top[0].gpu_diff, sign.gpu_data,
                           bottom[0].mutable_gpu_diff, np.float32(self.slope))
