"""pycaffe's ``caffe.Detector``: scores for windows of images (R-CNN style), each window warped
to the net's input, optionally with context around it."""

import numpy as np

from ..errors import ConfnetError
from ..layers import TEST
from . import io
from .classifier import input_transformer
from .pycaffe import Net


class Detector(Net):
    """A TEST-phase net scoring image windows.

    ``Detector(model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
    channel_swap=None, context_pad=None)``: preprocessing as Classifier's. ``context_pad``
    (pixels of the net's input) widens each window so that, once warped, the window proper
    fills the input minus that margin; parts of the wider box outside the image are filled
    with the mean.

    Windows are (ymin, xmin, ymax, xmax). As in pycaffe, a window without context is cut as
    ``im[ymin:ymax, xmin:xmax]`` (max exclusive) and one with context treats max as inclusive.
    """

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        input_transformer(self, "Detector", model_file, mean, input_scale, raw_scale,
                          channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """Scores for windows of images: ``images_windows`` is an iterable of (image file,
        windows). Returns one {"window", "prediction", "filename"} dict per window, in order."""
        images_windows = [(name, [np.asarray(w) for w in windows])
                          for name, windows in images_windows]
        crops = []
        for name, windows in images_windows:
            image = io.load_image(name)
            crops += [self.crop(image, window) for window in windows]
        if not crops:
            return []
        in_ = self.inputs[0]
        batch = np.stack([self.transformer.preprocess(in_, crop) for crop in crops])
        scores = self.forward_all(**{in_: batch})[self.outputs[0]]
        found = [(name, window) for name, windows in images_windows for window in windows]
        return [{"window": window, "prediction": score, "filename": name}
                for (name, window), score in zip(found, scores)]

    def detect_selective_search(self, image_fnames):
        """Not available: pycaffe calls the MATLAB selective-search code here."""
        raise ConfnetError("Detector.detect_selective_search needs MATLAB's selective search, "
                           "which confnet does not run; compute the proposal windows with a "
                           "tool of your choice and pass them to detect_windows")

    def crop(self, im, window):
        """The part of H x W x K image ``im`` a window covers (with context when configured),
        ready for preprocess (warped to the input size only with context)."""
        window = np.asarray(window).astype(int)
        if not self.context_pad:
            return im[window[0]:window[2], window[1]:window[3]]
        size = self.blobs[self.inputs[0]].width      # pycaffe assumes a square input
        scale = size / (size - 2.0 * self.context_pad)
        half = (window[2:] - window[:2] + 1) / 2.0
        centre = window[:2] + half
        box = np.round(np.concatenate([centre - scale * half, centre + scale * half]))
        full = box[2:] - box[:2] + 1
        pad_y, pad_x = np.round(np.maximum(0, -box[:2]) * size / full).astype(int)
        height, width = im.shape[:2]
        box = np.clip(box, 0, [height, width, height, width]).astype(int)
        clipped = box[2:] - box[:2] + 1
        crop_h, crop_w = np.round(clipped * size / full).astype(int)
        crop_h, crop_w = min(crop_h, size - pad_y), min(crop_w, size - pad_x)
        context = io.resize_image(im[box[0]:box[2], box[1]:box[3]], (crop_h, crop_w))
        out = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        out[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context
        return out

    def configure_crop(self, context_pad):
        """Set the crop size (the net input's H x W x K) and the context padding; with context,
        the mean in image space (before channel swap and raw scale) fills what lies outside
        the image."""
        in_ = self.inputs[0]
        order = np.argsort(self.transformer.transpose[in_])
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[order]
        self.context_pad = context_pad
        if not context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = np.array(mean, dtype=np.float32).transpose(order)
        swap = self.transformer.channel_swap.get(in_)
        if swap is not None:
            crop_mean = crop_mean[:, :, np.argsort(swap)]
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean
