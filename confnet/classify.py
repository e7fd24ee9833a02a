"""Classify image files with a trained deploy net, as Caffe's classify.py does.

Each image is preprocessed the way Caffe's data layers prepare a TEST batch:

    load (gray when the net's input has 1 channel, else BGR, as convert-data stores it; RGB with
    rgb=True), resize to ``resize`` (default: the net's input size), centre-crop to the net's
    input size, subtract the mean (a mean file or per-channel values), multiply by ``scale``

and the net's first output is read as class probabilities (a softmax is applied first when the
layer producing that output is not a Softmax). Images go through the net BATCH at a time (the
net reshapes its input to each batch).
"""

import logging
import os
from dataclasses import dataclass

import numpy as np

from .data.convert import IMAGE_EXTENSIONS, load_image
from .data.transformer import DataTransformer
from .errors import ConfnetError
from .layers import TEST
from .proto import confnet_pb2 as pb

log = logging.getLogger("confnet")

BATCH = 64


@dataclass
class Prediction:
    """The top classes of one image: ``classes`` (indices) and their ``probabilities``."""

    path: str
    classes: list
    probabilities: list


def list_images(sources):
    """The image files named by ``sources``: files as given, folders searched recursively for
    image files (sorted by path)."""
    paths = []
    for source in sources:
        if os.path.isdir(source):
            found = sorted(os.path.join(folder, name) for folder, _, names in os.walk(source)
                           for name in names
                           if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ConfnetError(f"{source}: no image files (extensions: "
                                   f"{' '.join(sorted(IMAGE_EXTENSIONS))})")
            paths += found
        elif os.path.isfile(source):
            paths.append(source)
        else:
            raise ConfnetError(f"{source}: no such file or folder")
    return paths


def read_labels(path):
    """Class names, one a line (convert-data's labels.txt; Caffe's synset_words.txt)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return [line.strip() for line in stream if line.strip()]
    except OSError as error:
        raise ConfnetError(f"{path}: cannot read the labels: {error.strerror}") from None


def parse_mean(text):
    """A TransformationParameter holding ``--mean``: a .binaryproto file or numbers
    "104,117,123" (one per channel, or one for all)."""
    param = pb.TransformationParameter()
    if not text:
        return param
    if os.path.isfile(text):
        param.mean_file = text
        return param
    try:
        param.mean_value.extend(float(v) for v in text.split(","))
    except ValueError:
        raise ConfnetError(f"--mean {text}: not a mean file, nor numbers like 104,117,123") \
            from None
    return param


class Classifier:
    """A deploy net with weights and the preprocessing that feeds it (see the module doc)."""

    def __init__(self, net, mean=None, scale=1.0, resize=None, rgb=False):
        if not net.inputs:
            raise ConfnetError(f"net '{net.name}': no Input layer; classify needs a deploy net")
        self.net, self.input = net, net.inputs[0]
        shape = net.blobs[self.input].shape
        if len(shape) != 4:
            raise ConfnetError(f"net '{net.name}': input '{self.input}' has shape {shape}; "
                               "classify needs images (N, C, H, W)")
        _, self.channels, height, width = shape
        self.resize = tuple(resize or (height, width))
        param = parse_mean(mean)
        param.scale = scale
        if self.resize != (height, width):
            if height != width:
                raise ConfnetError(f"--resize: the net's input is {height}x{width}; a centre "
                                   "crop needs a square input, so leave --resize out")
            param.crop_size = height
        self.transformer = DataTransformer(param, TEST)
        self.rgb = rgb
        self.output = net.outputs[0]
        producer = next(layer for layer, tops in zip(net.layers, net.top_ids)
                        if self.output in tops)
        self.softmax = producer.type_name != "Softmax"
        if self.softmax:
            log.info("Output '%s' comes from a %s layer: applying a softmax to it", self.output,
                     producer.type_name)

    def preprocess(self, paths):
        """The (len(paths), C, H, W) input batch of these image files."""
        images = []
        for path in paths:
            try:
                image = load_image(path, *self.resize, gray=self.channels == 1)
            except (OSError, ValueError) as error:
                raise ConfnetError(f"{path}: cannot read the image: {error}") from None
            if self.channels == 3 and self.rgb:
                image = image[::-1]
            if image.shape[0] != self.channels:
                raise ConfnetError(f"{path}: {image.shape[0]} channels, the net takes "
                                   f"{self.channels}")
            images.append(image)
        return self.transformer.transform_images(images)

    def probabilities(self, paths):
        """(len(paths), classes) class probabilities of these image files."""
        out = []
        for start in range(0, len(paths), BATCH):
            batch = self.preprocess(paths[start:start + BATCH])
            scores = self.net.forward(**{self.input: batch})[self.output]
            scores = scores.reshape(len(batch), -1).astype(np.float64)
            if self.softmax:
                scores = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores /= scores.sum(axis=1, keepdims=True)
            out.append(scores)
        return np.concatenate(out)

    def classify(self, paths, top_k=5):
        """[Prediction] of the ``top_k`` most probable classes of each image."""
        probabilities = self.probabilities(paths)
        top_k = min(top_k, probabilities.shape[1])
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return [Prediction(path, [int(c) for c in classes], [float(p[c]) for c in classes])
                for path, classes, p in zip(paths, order, probabilities)]


def load(model, weights, **options):
    """A Classifier of the deploy net ``model`` with ``weights``."""
    from .net import Net
    return Classifier(Net(model, TEST, weights=weights), **options)


def write_csv(path, predictions, labels=None):
    """One row per image: path, then class and probability for each of its top classes."""
    import csv

    from .atomic import atomic_path
    k = max((len(p.classes) for p in predictions), default=0)
    header = ["path"] + [f"{kind}{i + 1}" for i in range(k) for kind in ("class", "prob")]
    with atomic_path(path) as temp, open(temp, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for p in predictions:
            row = [p.path]
            for c, prob in zip(p.classes, p.probabilities):
                row += [name_of(c, labels), f"{prob:.6g}"]
            writer.writerow(row)


def name_of(index, labels):
    if labels is None:
        return str(index)
    if index >= len(labels):
        raise ConfnetError(f"class {index} has no line in the labels file ({len(labels)} lines)")
    return labels[index]
