"""Datum codec: images and arrays to and from Caffe's serialized `Datum`.

A Datum holds one image in CHW order with colour channels in BGR order (as OpenCV, and so Caffe,
stores them), either raw (`data`: uint8 bytes, or `float_data`) or encoded (`encoded: true`,
`data` holds the bytes of a PNG/JPEG file, whose pixels are ordinary RGB). Keys in an LMDB are
`"%08d_%s" % (index, relative_path)`, exactly as Caffe's convert_imageset writes them.
"""

import io

import numpy as np
from google.protobuf.message import DecodeError
from PIL import Image

from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb

# Pillow modes that decode to one channel, and those that carry an alpha channel.
_GRAY_MODES = {"1", "L"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP"}


def datum_key(index, relative_path):
    """The LMDB key of the `index`-th image, as Caffe's convert_imageset writes it."""
    return f"{index:08d}_{relative_path}".encode()


def array_to_datum(img, label=0, encoded_bytes=None):
    """A Datum from a CHW array (uint8 → `data`, any float → `float_data`), or from encoded bytes.

    With `encoded_bytes`, `data` holds those bytes and `encoded` is set; `img` may then be None
    (Caffe leaves channels/height/width unset for encoded datums; when `img` is given its shape is
    recorded, which Caffe ignores).
    """
    datum = pb.Datum(label=int(label))
    if img is not None:
        img = np.asarray(img)
        if img.ndim != 3:
            raise ConfnetError(f"a datum needs a CHW array (3 dimensions), got shape {img.shape}")
        datum.channels, datum.height, datum.width = (int(d) for d in img.shape)
    if encoded_bytes is not None:
        datum.data = bytes(encoded_bytes)
        datum.encoded = True
    elif img is None:
        raise ConfnetError("array_to_datum needs an image array or encoded bytes")
    elif img.dtype == np.uint8:
        datum.data = np.ascontiguousarray(img).tobytes()
    else:
        datum.float_data.extend(np.asarray(img, dtype=np.float32).ravel().tolist())
    return datum


def datum_to_array(datum, force_color=False, force_gray=False):
    """The image of a Datum as a float32 CHW array (BGR for colour), decoding encoded data.

    `force_color` / `force_gray` (TransformationParameter) apply to encoded datums as in Caffe:
    decode to 3 or 1 channels; otherwise an encoded image keeps its own channel count.
    """
    if datum.encoded:
        return decode_image(datum.data, force_color, force_gray).astype(np.float32)
    shape = (datum.channels, datum.height, datum.width)
    size = shape[0] * shape[1] * shape[2]
    if datum.data:
        if len(datum.data) != size:
            raise ConfnetError(f"datum has {len(datum.data)} data bytes but channels*height*width "
                               f"= {size}; the database is corrupt")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).astype(np.float32)
    if len(datum.float_data) != size:
        raise ConfnetError(f"datum has {len(datum.float_data)} float_data values but "
                           f"channels*height*width = {size}; the database is corrupt")
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)


def decode_datum(raw, force_color=False, force_gray=False):
    """(float32 CHW image, label) from a serialized Datum, as read from an LMDB."""
    datum = pb.Datum()
    try:
        datum.ParseFromString(raw)
    except DecodeError as e:
        raise ConfnetError(f"value is not a serialized Datum ({e}); is this a Caffe image LMDB?")
    return datum_to_array(datum, force_color, force_gray), datum.label


def image_to_array(image, gray=False):
    """A Pillow image as a uint8 CHW array: 1 channel when `gray`, else 3 channels in BGR order."""
    if gray:
        return np.asarray(image.convert("L"), dtype=np.uint8)[np.newaxis]
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)[:, :, ::-1]
                                .transpose(2, 0, 1))


def array_to_image(img):
    """A uint8 CHW array (1 channel, or 3 in BGR order) as a Pillow image."""
    img = np.asarray(img, dtype=np.uint8)
    if img.shape[0] == 1:
        return Image.fromarray(img[0])
    if img.shape[0] == 3:
        return Image.fromarray(np.ascontiguousarray(img[::-1].transpose(1, 2, 0)))
    raise ConfnetError(f"can only encode 1- or 3-channel images, got {img.shape[0]} channels")


def encode_image(img, encode_type="png", quality=95):
    """PNG/JPEG/BMP file bytes of a uint8 CHW array (1 channel, or 3 in BGR order)."""
    fmt = _PIL_FORMATS.get(encode_type.lower())
    if fmt is None:
        raise ConfnetError(f"unknown encode type '{encode_type}'; use one of "
                           f"{', '.join(sorted(_PIL_FORMATS))}")
    out = io.BytesIO()
    options = {"JPEG": {"quality": quality}, "PNG": {"compress_level": 1}}.get(fmt, {})
    array_to_image(img).save(out, format=fmt, **options)
    return out.getvalue()


def decode_image(data, force_color=False, force_gray=False):
    """uint8 CHW array from encoded image bytes, as OpenCV's imdecode gives it to Caffe.

    Without a force flag the image keeps its channels (gray → 1, colour → 3 BGR, alpha → 4 BGRA).
    """
    if force_color and force_gray:
        raise ConfnetError("cannot set both force_color and force_gray in transform_param")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for a broken file
        raise ConfnetError(f"cannot decode encoded image ({e})")
    if force_color or force_gray:
        return image_to_array(image, gray=force_gray)
    if image.mode in _GRAY_MODES:
        return image_to_array(image, gray=True)
    if image.mode in _ALPHA_MODES:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]].transpose(2, 0, 1))
    if image.mode.startswith(("I", "F")):
        raise ConfnetError(f"image mode {image.mode} (16-bit or float) is not supported; "
                           "convert the image to 8 bits")
    return image_to_array(image)
