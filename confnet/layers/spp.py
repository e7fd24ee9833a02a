"""SPP: spatial pyramid pooling, a fixed-length vector from an input of any size."""

import numpy as np

from ..blob import Blob
from ..gpu import blas
from ..proto import confnet_pb2 as pb
from .base import Layer
from .pooling import AVE, MAX, Pooling
from .registry import register_layer


def level_geometry(size, bins):
    """Caffe's window for ``bins`` bins along an axis of ``size`` cells: kernel = stride =
    ceil(size / bins), and pad = (kernel * bins - size + 1) // 2 on each side."""
    kernel = -(-size // bins)
    return kernel, (kernel * bins - size + 1) // 2


@register_layer("SPP")
class SPP(Layer):
    """Level l = 0 .. pyramid_height - 1 pools the input into 2^l x 2^l bins: a Pooling (MAX or
    AVE, Caffe's pooling exactly, border rules included) with, per spatial axis,
    kernel = stride = ceil(size / 2^l) and pad = (kernel 2^l - size + 1) // 2.

    bottom: 1 blob (N, C, H, W).
    top: pyramid_height 1: the single level's pooling, (N, C, 1, 1), as in Caffe;
         otherwise (N, sum_l C * PH_l * PW_l): each level's (N, C, PH_l, PW_l) output flattened
         and the levels concatenated in order (PH_l = PW_l = 2^l for most sizes; Caffe's
         pooling size rules decide).
    backward: each level's pooling backward of its part of dy; the input's gradient is the sum
        over the levels.

    Settings: pyramid_height (>= 1), pool (MAX, AVE; STOCHASTIC is not supported); engine does
    not change the result. An input too small for the top level (a pad not smaller than its
    window, which Caffe's pooling refuses too) fails with a message naming the level.

    On the device each level's Pooling runs its device path, ``spp_forward``/``spp_backward``
    (``cuda/pooling.cu``) copy it in and out of its band of the top, and the levels' input
    gradients are added on the device in level order, as on the host.
    """

    params = ("spp_param",)
    num_bottom = num_top = 1
    has_gpu = True
    kernels = "pooling.cu"

    def layer_setup(self, bottom, top):
        p = self.param.spp_param
        self.require(p.pool in (MAX, AVE), "pool: STOCHASTIC is not supported; use MAX or AVE")
        self.require(p.pyramid_height >= 1, "pyramid_height must be set to at least 1")
        self.height, self.method = p.pyramid_height, p.pool
        self.spatial = None
        # What every level pools: bottom[0]'s data, with its own diff for one level's gradient.
        self.input = Blob((), self.dtype, f"{self.name}/input")

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.require(len(shape) == 4, f"needs a 4-D input (N, C, H, W), got shape {shape}")
        self.require(bottom[0] is not top[0], "cannot be computed in place")
        self.require(all(s > 0 for s in shape[2:]), f"needs a non-empty image, got {shape}")
        if self.input.shape != shape:
            self.input = Blob(shape, self.dtype, self.input.name)
        self.input.share_data(bottom[0])
        if shape[2:] != self.spatial:
            self.levels = [self._level(i, shape[2:]) for i in range(self.height)]
            self.spatial = shape[2:]
        for pool, out in self.levels:
            pool.reshape([self.input], [out])
        if self.height == 1:
            top[0].reshape(self.levels[0][1].shape)
        else:
            top[0].reshape((shape[0], sum(out.count_range(1) for _, out in self.levels)))

    def _level(self, level, spatial):
        """The Pooling layer of one level for an input of ``spatial`` (H, W), and its top."""
        bins = 2 ** level
        (kh, ph), (kw, pw) = (level_geometry(size, bins) for size in spatial)
        self.require(ph < kh and pw < kw,
                     f"an input of {spatial[0]} x {spatial[1]} is too small for "
                     f"level {level} ({bins} x {bins} bins): its pad ({ph}, {pw}) is not "
                     f"smaller than its window ({kh}, {kw})")
        param = pb.LayerParameter(name=f"{self.name}/level{level}", type="Pooling")
        param.pooling_param.pool = self.method
        param.pooling_param.kernel_h, param.pooling_param.kernel_w = kh, kw
        param.pooling_param.stride_h, param.pooling_param.stride_w = kh, kw
        param.pooling_param.pad_h, param.pooling_param.pad_w = ph, pw
        pool = Pooling(param, self.phase, self.dtype)
        out = Blob((), self.dtype, f"{param.name}/top")
        pool.setup([self.input], [out])
        return pool, out

    def _parts(self, top):
        """Each level's part of the top blob: (N, C, PH_l, PW_l) views."""
        if self.height == 1:
            return [top]
        ends = np.cumsum([out.count_range(1) for _, out in self.levels])
        pieces = np.split(top, ends[:-1], axis=1)
        return [piece.reshape(out.shape) for piece, (_, out) in zip(pieces, self.levels)]

    def forward_cpu(self, bottom, top):
        for (pool, out), part in zip(self.levels, self._parts(top[0].data)):
            pool.forward([self.input], [out])
            part[...] = out.data

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        total = np.zeros_like(bottom[0].diff)
        for (pool, out), part in zip(self.levels, self._parts(top[0].diff)):
            out.diff[...] = part
            pool.backward([out], [True], [self.input])
            total += self.input.diff
        bottom[0].diff[...] = total

    def _bands(self):
        """Per level: (pooling, its top, its columns, their offset in a row of the top)."""
        total = sum(out.count_range(1) for _, out in self.levels)
        offset = 0
        for pool, out in self.levels:
            cols = out.count_range(1)
            yield pool, out, np.int32(cols), np.int32(total), np.int32(offset)
            offset += cols

    def forward_gpu(self, bottom, top):
        for pool, out, cols, total, offset in self._bands():
            pool.forward([self.input], [out])
            if self.height == 1:
                blas.copy(out.count, out.gpu_data, top[0].mutable_gpu_data)
            else:
                self.launch_1d("spp_forward", out.count, out.gpu_data, cols, total, offset,
                               top[0].mutable_gpu_data)

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        n = bottom[0].count
        for level, (pool, out, cols, total, offset) in enumerate(self._bands()):
            if self.height == 1:
                blas.copy(out.count, top[0].gpu_diff, out.mutable_gpu_diff)
            else:
                self.launch_1d("spp_backward", out.count, top[0].gpu_diff, cols, total, offset,
                               out.mutable_gpu_diff)
            pool.backward([out], [True], [self.input])
            if level == 0:
                blas.copy(n, self.input.gpu_diff, bottom[0].mutable_gpu_diff)
            else:
                blas.add(n, bottom[0].gpu_diff, self.input.gpu_diff, bottom[0].mutable_gpu_diff)
