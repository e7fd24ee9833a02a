"""pycaffe's ``caffe.io``: preprocessing for a net's input, images, and Caffe's array messages.

Images here are float arrays in pycaffe's layout, H x W x K with RGB channels in [0, 1] as
``load_image`` returns them; ``Transformer.preprocess`` turns one into the net's K x H x W input.
Resizing uses Pillow (a confnet dependency) channel by channel on float32 images, where pycaffe
uses scikit-image / scipy: the same sizes and interpolation orders, not bit-identical pixels.
"""

import numpy as np
from PIL import Image

from ..data import datum as _datum
from ..errors import ConfnetError
from ..proto import confnet_pb2 as pb
from ..proto import io as _io

# interp_order (pycaffe, after scipy's spline orders) -> Pillow resampling filter.
_RESAMPLE = {0: Image.Resampling.NEAREST, 1: Image.Resampling.BILINEAR,
             2: Image.Resampling.BICUBIC, 3: Image.Resampling.BICUBIC}


# -- arrays and messages --------------------------------------------------------------------
def blobproto_to_array(blob, return_diff=False):
    """The data (or diff) of a BlobProto as an array of its shape (the legacy num/channels/
    height/width when set). Values are float32, the precision a BlobProto stores; double_data
    is read too (pycaffe ignores it)."""
    return _io.blob_to_array(blob, diff=return_diff)


def array_to_blobproto(arr, diff=None):
    """A BlobProto of ``arr``'s shape holding its values (and ``diff``'s, when given)."""
    return _io.array_to_blob(np.asarray(arr), None if diff is None else np.asarray(diff))


def arraylist_to_blobprotovector_str(arraylist):
    """A serialized BlobProtoVector holding each array as a BlobProto."""
    vector = pb.BlobProtoVector()
    vector.blobs.extend(array_to_blobproto(array) for array in arraylist)
    return vector.SerializeToString()


def blobprotovector_str_to_arraylist(text):
    """The arrays of a serialized BlobProtoVector."""
    vector = pb.BlobProtoVector()
    vector.ParseFromString(text)
    return [blobproto_to_array(blob) for blob in vector.blobs]


def array_to_datum(arr, label=None):
    """A Datum of a C x H x W array: uint8 arrays as bytes (``data``), others as ``float_data``.
    ``label``, when given, is stored (an int)."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ConfnetError(f"array_to_datum needs a C x H x W array, got shape {arr.shape}")
    return _datum.array_to_datum(arr, 0 if label is None else label)


def datum_to_array(datum):
    """The C x H x W array of a Datum: uint8 for byte data, float for ``float_data``, as
    pycaffe. An encoded Datum (PNG/JPEG bytes) is decoded to uint8, where pycaffe fails."""
    if datum.encoded:
        return _datum.decode_image(datum.data)
    if len(datum.data):
        shape = (datum.channels, datum.height, datum.width)
        if len(datum.data) != np.prod(shape):
            raise ConfnetError(f"datum has {len(datum.data)} bytes but channels x height x "
                               f"width = {' x '.join(map(str, shape))}")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return _datum.datum_to_array(datum)


# -- images ---------------------------------------------------------------------------------
def load_image(filename, color=True):
    """An image file as a float32 H x W x 3 RGB array in [0, 1] (``color``), or H x W x 1
    (``color=False``). A gray file loaded in colour has its channel repeated; an alpha channel
    is dropped."""
    try:
        with Image.open(filename) as image:
            image.load()
            image = image.convert("RGB" if color else "L")
    except (OSError, ValueError) as error:
        raise ConfnetError(f"{filename}: cannot read the image ({error})") from None
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array if color else array[:, :, np.newaxis]


def resize_image(im, new_dims, interp_order=1):
    """``im`` (H x W x K, any K) resized to ``new_dims`` (height, width), as float32.

    interp_order: 0 nearest, 1 bilinear, 2 or 3 bicubic. A constant image stays constant.
    """
    im = np.asarray(im, dtype=np.float32)
    if im.ndim != 3:
        raise ConfnetError(f"resize_image needs an H x W x K image, got shape {im.shape}")
    if interp_order not in _RESAMPLE:
        raise ConfnetError(f"resize_image: interp_order {interp_order} is not supported; "
                           f"use one of {sorted(_RESAMPLE)}")
    height, width = (int(d) for d in new_dims)
    if (height, width) == im.shape[:2]:
        return im.copy()
    if im.size and im.min() == im.max():
        return np.full((height, width, im.shape[2]), im.flat[0], np.float32)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(im[:, :, k]))
                           .resize((width, height), _RESAMPLE[interp_order]))
                for k in range(im.shape[2])]
    return np.stack(channels, axis=2).astype(np.float32, copy=False)


def oversample(images, crop_dims):
    """Ten crops of each H x W x K image: the four corners and the centre, then the same five
    mirrored left-right. Returns (10 * N) x crop_h x crop_w x K, image by image."""
    images = [np.asarray(im, dtype=np.float32) for im in images]
    crop_h, crop_w = (int(d) for d in crop_dims)
    height, width = images[0].shape[:2]
    if crop_h > height or crop_w > width:
        raise ConfnetError(f"oversample: crops of {crop_h}x{crop_w} do not fit in "
                           f"{height}x{width} images")
    # pycaffe centres with float halves and truncates: (H - h) / 2 rounded down here too.
    corners = [(0, 0), (0, width - crop_w), (height - crop_h, 0),
               (height - crop_h, width - crop_w), ((height - crop_h) // 2, (width - crop_w) // 2)]
    crops = []
    for im in images:
        five = [im[y:y + crop_h, x:x + crop_w] for y, x in corners]
        crops += five + [crop[:, ::-1] for crop in five]
    return np.stack(crops).astype(np.float32, copy=False)


# -- Transformer ----------------------------------------------------------------------------
class Transformer:
    """Turns images into a net's input and back (pycaffe's ``caffe.io.Transformer``).

    ``inputs``: {input blob name: its shape (N, K, H, W)}. Per input, ``preprocess`` applies in
    this order, each step only when configured:

        resize to (H, W)  ->  transpose  ->  channel swap  ->  * raw_scale  ->  - mean
        ->  * input_scale

    and ``deprocess`` undoes them in reverse. pycaffe's preprocess scales a float32 input in
    place (the caller's image changes); here the input is never modified.
    """

    def __init__(self, inputs):
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose, self.channel_swap = {}, {}
        self.raw_scale, self.mean, self.input_scale = {}, {}, {}

    def _check_input(self, in_):
        if in_ not in self.inputs:
            raise ConfnetError(f"'{in_}' is not one of the net inputs: "
                               f"{', '.join(self.inputs)}")

    def preprocess(self, in_, data):
        """One H x W x K image (as load_image gives) as the K x H x W input ``in_``."""
        self._check_input(in_)
        out = np.array(data, dtype=np.float32)
        dims = self.inputs[in_][2:]
        if out.shape[:2] != dims:
            out = resize_image(out, dims)
        if in_ in self.transpose:
            out = out.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            out = out[list(self.channel_swap[in_]), :, :]
        if in_ in self.raw_scale:
            out *= self.raw_scale[in_]
        if in_ in self.mean:
            out -= self.mean[in_]
        if in_ in self.input_scale:
            out *= self.input_scale[in_]
        return out

    def deprocess(self, in_, data):
        """The image an input of ``in_`` came from (inverse of preprocess, without the resize);
        a leading batch axis of 1 is dropped."""
        self._check_input(in_)
        out = np.array(data, dtype=np.float32).squeeze()
        if in_ in self.input_scale:
            out /= self.input_scale[in_]
        if in_ in self.mean:
            out += self.mean[in_]
        if in_ in self.raw_scale:
            out /= self.raw_scale[in_]
        if in_ in self.channel_swap:
            out = out[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            out = out.transpose(np.argsort(self.transpose[in_]))
        return out

    def set_transpose(self, in_, order):
        """Axis order taking the image to the input, e.g. (2, 0, 1): H x W x K -> K x H x W."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ConfnetError(f"set_transpose('{in_}'): the order needs "
                               f"{len(self.inputs[in_]) - 1} axes, got {len(order)}")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """Channel order taking the image to the input, e.g. (2, 1, 0): RGB -> BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise ConfnetError(f"set_channel_swap('{in_}'): the order needs "
                               f"{self.inputs[in_][1]} channels, got {len(order)}")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """Factor applied after the channel swap, e.g. 255 for [0, 1] images and a [0, 255]
        model."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """Mean subtracted after raw scaling: one value per channel (K,), or a K x H x W (or
        H x W) image of the input's size."""
        self._check_input(in_)
        mean = np.asarray(mean, dtype=np.float32)
        channels, dims = self.inputs[in_][1], self.inputs[in_][2:]
        if mean.ndim == 1:
            if mean.shape[0] != channels:
                raise ConfnetError(f"set_mean('{in_}'): {mean.shape[0]} channel means for "
                                   f"{channels} channels")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            mean = mean[np.newaxis] if mean.ndim == 2 else mean
            if mean.shape not in ((channels,) + dims, (1,) + dims):
                raise ConfnetError(f"set_mean('{in_}'): mean of shape {mean.shape} does not "
                                   f"match the input {(channels,) + dims}")
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Factor applied last, after the mean (e.g. 0.017 for a standard-deviation scaling)."""
        self._check_input(in_)
        self.input_scale[in_] = scale
