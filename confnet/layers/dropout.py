"""Dropout: zero a random fraction of the inputs while training."""

import numpy as np

from .. import gpu, rng
from .base import TRAIN
from .neuron import Neuron
from .registry import register_layer

_MASK32 = 0xFFFFFFFF


def _mix(h):
    """A 32-bit finalizer with full avalanche (Wellons' lowbias32), on uint32 arrays (numpy's
    uint32 arithmetic wraps, as C's unsigned int does). cuda/neuron.cu's dropout_mix."""
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x846CA68B)
    h ^= h >> np.uint32(16)
    return h


def keep_mask(count, seed, threshold):
    """The dropout mask of ``count`` elements (C order): element i is kept when
    mix(mix(i ^ seed_lo) ^ seed_hi) >= threshold, with seed = seed_hi * 2^32 + seed_lo.

    A counter-based hash instead of a stream of draws, so the device kernel (cuda/neuron.cu)
    computes the same mask from (seed, i) alone: CPU and GPU runs drop the same elements, and
    backward recomputes the mask instead of storing or copying one."""
    h = np.arange(count, dtype=np.uint32)
    h ^= np.uint32(seed & _MASK32)
    h = _mix(h)
    h ^= np.uint32(seed >> 32)
    return _mix(h) >= np.uint32(threshold)


def _int32(bits):
    """A 32-bit pattern as the int32 a kernel's ``int`` parameter takes."""
    return np.array(bits & _MASK32, np.uint32).view(np.int32)[()]


@register_layer("Dropout")
class Dropout(Neuron):
    """With p = dropout_ratio, in [0, 1), and a keep mask m (``keep_mask``: a hash of a 64-bit
    seed drawn from confnet.rng once per forward and the element's index; each element is kept
    with probability 1 - p, within 2^-32):

        TRAIN: y = x * m * scale, scale = 1 / (1 - p)          TEST: y = x

    bottom: 1 blob, any shape.   top: 1 blob, same shape (may be in place).
    backward: TRAIN dx = dy * m * scale; TEST dx = dy.

    On the device the seed lives in a slot of the scalar table (confnet/gpu/graph.py), which
    the kernels read: the solver draws it before a pass (``prepare_pass``), so a pass replayed
    from a CUDA graph still gets a new mask; a forward outside the solver draws and uploads its
    own.
    """

    params = ("dropout_param",)
    has_gpu = True
    kernels = "neuron.cu"

    def layer_setup(self, bottom, top):
        dp = self.param.dropout_param
        self.ratio = float(dp.dropout_ratio)
        self.require(0 <= self.ratio < 1, f"dropout_ratio must be in [0, 1), got {self.ratio}")
        # Kept when the 32-bit hash is at least ratio * 2^32, as Caffe compares its uint draws.
        self.threshold = min(round(self.ratio * 2**32), _MASK32)
        self.factor = None
        self.seed = None
        self._seed_slot = None    # device: the seed's two words in the scalar table
        self._seed_pass = None    # the table's pass the slot's seed was drawn for

    def draw_seed(self):
        self.seed = int(rng.get().integers(2**64, dtype=np.uint64))
        return self.seed

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        if self.phase == TRAIN:
            keep = keep_mask(x.size, self.draw_seed(), self.threshold).reshape(x.shape)
            # scale rounded to the blob's dtype first, so float32 runs match the kernel's bits
            self.factor = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.ratio))
        else:
            self.factor = 1.0
        top[0].data[...] = x * self.factor

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.factor

    def prepare_pass(self):
        if self.phase == TRAIN and self.on_device():
            self._draw_device_seed()

    def _draw_device_seed(self):
        table = gpu.current().scalars
        if self._seed_slot is None:
            self._seed_slot = table.reserve(2)
        seed = self.draw_seed()
        self._seed_slot.set_word(0, seed & _MASK32)
        self._seed_slot.set_word(1, seed >> 32)
        self._seed_pass = table.pass_id

    def forward_gpu(self, bottom, top):
        if self.phase == TRAIN:
            backend = gpu.current()
            if self._seed_pass != backend.scalars.pass_id:   # not prepared for this pass
                self._draw_device_seed()
                backend.scalars.flush()
            if not backend.capturing:   # (a capture that breaks reruns the pass: same seed)
                self._seed_pass = None  # used: the next forward draws again, unless prepared
            self._launch("dropout_forward", bottom[0].count, bottom[0].gpu_data,
                         top[0].mutable_gpu_data)
        elif top[0] is not bottom[0]:
            top[0].copy_from(bottom[0])

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.phase == TRAIN:
            self._launch("dropout_backward", top[0].count, top[0].gpu_diff,
                         bottom[0].mutable_gpu_diff)
        elif top[0] is not bottom[0]:
            bottom[0].copy_from(top[0], diff=True)

    def _launch(self, kernel, count, source, target):
        """The mask of forward's seed applied to ``source`` (x or dy) into ``target``."""
        self.launch_1d(kernel, count, source, target, self._seed_slot.pointer,
                       _int32(self.threshold), np.float32(1 / (1 - self.ratio)))
