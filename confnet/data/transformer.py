"""Caffe's TransformationParameter applied to a whole batch at once.

For every image, exactly as Caffe's DataTransformer does it:

    top[c, h, w] = (x[c, h_off + h, w_off + w'] - mean[c, h_off + h, w_off + w']) * scale
    with w' = width - 1 - w when the image is mirrored, else w

`mean` is the mean_file image (cropped at the same offset as the image) or one mean_value per
channel. Crop offsets are random in TRAIN and centred in TEST. Mirroring, when `mirror: true`, is a
coin flip per image in either phase: Caffe does not look at the phase for it, so a TEST layer
should leave `mirror` unset.
"""

import os

import numpy as np

from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb
from confnet.proto.io import read_binaryproto


def _phase(phase):
    if isinstance(phase, str):
        if phase.upper() not in ("TRAIN", "TEST"):
            raise ConfnetError(f"unknown phase '{phase}'; use TRAIN or TEST")
        return pb.Phase.Value(phase.upper())
    return int(phase)


class DataTransformer:
    """Applies a TransformationParameter to float32 (N, C, H, W) batches of 0-255 values.

    `rng` (a numpy Generator) draws the crop offsets and mirror flips; its state is what a
    snapshot saves to replay the same batches.
    """

    def __init__(self, transform_param=None, phase=pb.TRAIN, rng=None):
        param = transform_param if transform_param is not None else pb.TransformationParameter()
        self.param = param
        self.phase = _phase(phase)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.scale = np.float32(param.scale)
        self.mirror = param.mirror
        self.crop_size = param.crop_size
        self.force_color = param.force_color
        self.force_gray = param.force_gray
        if self.force_color and self.force_gray:
            raise ConfnetError("transform_param sets both force_color and force_gray; set one")
        if param.mean_file and len(param.mean_value):
            raise ConfnetError(f"transform_param sets both mean_file '{param.mean_file}' and "
                               "mean_value; Caffe accepts only one of them")
        self.mean_image = _load_mean(param.mean_file) if param.mean_file else None
        self.mean_values = np.asarray(param.mean_value, dtype=np.float32)

    def output_shape(self, input_chw):
        """(C, H, W) of a transformed image of shape `input_chw`."""
        c, h, w = input_chw
        if self.crop_size:
            self._check_crop(h, w)
            return (c, self.crop_size, self.crop_size)
        return (c, h, w)

    def transform(self, batch):
        """The transformed batch: a new float32 array of shape (N, *output_shape(C, H, W))."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise ConfnetError(f"a batch to transform must be (N, C, H, W), got {batch.shape}")
        n, c, h, w = batch.shape
        mean = self._mean(c, h, w)
        flips, h_off, w_off = self._draw(n, h, w)
        out_h, out_w = self.output_shape((c, h, w))[1:]
        out = np.empty((n, c, out_h, out_w), dtype=np.float32)
        if not flips.any() and (h_off == h_off[0]).all() and (w_off == w_off[0]).all():
            _crop(batch, mean, h_off[0], w_off[0], False, out)
        else:
            # One slice copy per image: faster than a fancy-indexed gather of the whole batch.
            for i in range(n):
                _crop(batch[i], mean, h_off[i], w_off[i], flips[i], out[i])
        if self.scale != 1:
            out *= self.scale
        return out

    def transform_images(self, images):
        """Transforms a list of CHW images; they may differ in size when crop_size is set."""
        if all(image.shape == images[0].shape for image in images):
            return self.transform(np.stack(images))
        if not self.crop_size:
            shapes = sorted({image.shape for image in images})
            raise ConfnetError(f"images in a batch differ in size ({shapes[0]} and {shapes[-1]}); "
                               "resize them when converting, or set crop_size")
        return np.concatenate([self.transform(image[np.newaxis]) for image in images])

    def _draw(self, n, h, w):
        """Mirror flags and crop offsets (N,) of a batch, drawn from the rng as needed."""
        flips = self.rng.integers(0, 2, n).astype(bool) if self.mirror else np.zeros(n, bool)
        if not self.crop_size:
            return flips, np.zeros(n, int), np.zeros(n, int)
        self._check_crop(h, w)
        size = self.crop_size
        if self.phase == pb.TRAIN:
            h_off = self.rng.integers(0, h - size + 1, n)
            return flips, h_off, self.rng.integers(0, w - size + 1, n)
        return flips, np.full(n, (h - size) // 2), np.full(n, (w - size) // 2)

    def _check_crop(self, h, w):
        if self.crop_size > h or self.crop_size > w:
            raise ConfnetError(f"crop_size {self.crop_size} is larger than the {h}x{w} images; "
                               "lower crop_size or convert the images at a larger size")

    def _mean(self, c, h, w):
        """The mean to subtract, broadcastable against a (C, H, W) image, or None."""
        if self.mean_image is not None:
            if self.mean_image.shape != (c, h, w):
                raise ConfnetError(f"mean_file '{self.param.mean_file}' has shape "
                                   f"{self.mean_image.shape} but the images are {(c, h, w)}; "
                                   "compute the mean from this database")
            return self.mean_image
        if len(self.mean_values) == 0:
            return None
        if len(self.mean_values) not in (1, c):
            raise ConfnetError(f"transform_param has {len(self.mean_values)} mean_value entries "
                               f"for {c}-channel images; give "
                               f"{'1' if c == 1 else f'1 or {c}'}")
        return np.broadcast_to(self.mean_values, (c,)).reshape(c, 1, 1)


def _crop(images, mean, h_off, w_off, flip, out):
    """out = (images - mean) cropped at (h_off, w_off) to out's size, then flipped if `flip`.

    `images` is (C, H, W) or (N, C, H, W); a full-size mean is cropped (and flipped) with them.
    """
    rows = slice(h_off, h_off + out.shape[-2])
    cols = slice(w_off, w_off + out.shape[-1])
    image = images[..., rows, cols]
    if mean is not None and mean.shape[1:] == images.shape[-2:]:
        mean = mean[:, rows, cols]
    if flip:
        image = image[..., ::-1]
        mean = mean[..., ::-1] if mean is not None else None
    if mean is None:
        out[...] = image
    else:
        np.subtract(image, mean, out=out)


def _load_mean(path):
    if not os.path.isfile(path):
        raise ConfnetError(f"mean_file '{path}' not found; create it with confnet compute-mean")
    mean = np.asarray(read_binaryproto(path), dtype=np.float32)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3:
        raise ConfnetError(f"mean_file '{path}' holds a blob of shape {mean.shape}; "
                           "expected one (C, H, W) image")
    return mean
