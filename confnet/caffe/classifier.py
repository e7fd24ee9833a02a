"""pycaffe's ``caffe.Classifier``: class scores for images, with pycaffe's preprocessing."""

import numpy as np

from ..errors import ConfnetError
from ..layers import TEST
from . import io
from .pycaffe import Net


class Classifier(Net):
    """A TEST-phase net that classifies H x W x K images (as ``caffe.io.load_image`` gives).

    ``Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None)``: images are first resized to ``image_dims`` (default:
    the net's input size), then cropped to the net's input size, then go through
    ``self.transformer`` (transpose to K x H x W, channel swap, raw scale, mean, input scale;
    see caffe.io.Transformer).
    """

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        in_ = input_transformer(self, "Classifier", model_file, mean, input_scale, raw_scale,
                                channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        self.image_dims = self.crop_dims if image_dims is None else np.array(image_dims)
        if (self.image_dims < self.crop_dims).any():
            raise ConfnetError(f"Classifier: image_dims {tuple(self.image_dims)} are smaller "
                               f"than the net's input {tuple(self.crop_dims)}")

    def predict(self, inputs, oversample=True):
        """Class scores (N x classes) for a list of H x W x K images.

        oversample: score ten crops of each image (corners, centre, and their mirrors) and
        average them; otherwise score the centre crop only.
        """
        if not len(inputs):
            raise ConfnetError("Classifier.predict needs at least one image")
        images = np.stack([io.resize_image(image, self.image_dims) for image in inputs])
        if oversample:
            crops = io.oversample(images, self.crop_dims)
        else:
            top, left = (self.image_dims - self.crop_dims) // 2
            height, width = self.crop_dims
            crops = images[:, top:top + height, left:left + width, :]
        in_ = self.inputs[0]
        batch = np.stack([self.transformer.preprocess(in_, crop) for crop in crops])
        scores = self.forward_all(**{in_: batch})[self.outputs[0]]
        if oversample:
            scores = scores.reshape(len(inputs), 10, -1).mean(axis=1)
        return scores


def input_transformer(net, kind, model_file, mean, input_scale, raw_scale, channel_swap):
    """Give ``net`` (a Classifier or Detector) the ``transformer`` of its first input blob, with
    pycaffe's settings: K x H x W transpose, then the mean, scales and channel swap given.
    Returns the input blob's name."""
    if not net.inputs:
        raise ConfnetError(f"{model_file}: a {kind} needs a net with an Input layer")
    in_ = net.inputs[0]
    net.transformer = io.Transformer({in_: net.blobs[in_].data.shape})
    net.transformer.set_transpose(in_, (2, 0, 1))
    for setting, value in (("set_mean", mean), ("set_input_scale", input_scale),
                           ("set_raw_scale", raw_scale), ("set_channel_swap", channel_swap)):
        if value is not None:
            getattr(net.transformer, setting)(in_, value)
    return in_
