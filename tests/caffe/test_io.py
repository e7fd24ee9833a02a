"""caffe.io: Transformer (order of the steps and their inverse), images, oversampling, and the
BlobProto / Datum conversions."""

import numpy as np
import pytest
from PIL import Image

from confnet.caffe import io
from confnet.caffe.proto import caffe_pb2
from confnet.errors import ConfnetError

RNG = np.random.default_rng(0)


def configured():
    t = io.Transformer({"data": (1, 3, 4, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    return t


def test_preprocess_applies_the_steps_in_pycaffe_order():
    image = RNG.random((4, 5, 3)).astype(np.float32)          # H x W x RGB in [0, 1]
    kept = image.copy()
    out = configured().preprocess("data", image)
    bgr = image.transpose(2, 0, 1)[::-1]
    expected = (bgr * 255.0 - np.array([10, 20, 30]).reshape(3, 1, 1)) * 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(image, kept)     # pycaffe scales a float32 input in place


def test_deprocess_inverts_preprocess():
    t = configured()
    image = RNG.random((4, 5, 3)).astype(np.float32)
    back = t.deprocess("data", t.preprocess("data", image)[np.newaxis])
    np.testing.assert_allclose(back, image, rtol=1e-5, atol=1e-6)


def test_preprocess_resizes_to_the_input_size():
    t = io.Transformer({"data": (1, 3, 4, 5)})
    t.set_transpose("data", (2, 0, 1))
    assert t.preprocess("data", RNG.random((8, 10, 3))).shape == (3, 4, 5)


def test_transformer_settings_are_checked():
    t = io.Transformer({"data": [1, 3, 4, 5]})       # a list works as well as a tuple
    with pytest.raises(ConfnetError, match="'label' is not one of the net inputs: data"):
        t.preprocess("label", np.zeros((4, 5, 3)))
    with pytest.raises(ConfnetError, match="needs 3 axes, got 2"):
        t.set_transpose("data", (1, 0))
    with pytest.raises(ConfnetError, match="needs 3 channels, got 2"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(ConfnetError, match="2 channel means for 3 channels"):
        t.set_mean("data", np.zeros(2))
    with pytest.raises(ConfnetError, match=r"mean of shape \(3, 5, 5\) does not match"):
        t.set_mean("data", np.zeros((3, 5, 5)))
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", np.ones((3, 4, 5)))                     # an image-sized mean
    t.set_mean("data", np.arange(20.0).reshape(4, 5))          # or one plane for all channels
    out = t.preprocess("data", np.zeros((4, 5, 3)))
    np.testing.assert_array_equal(out, -np.broadcast_to(np.arange(20.0).reshape(4, 5), (3, 4, 5)))


def test_load_image_colour_and_gray(tmp_path):
    rgb = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    image = io.load_image(str(tmp_path / "c.png"))
    assert image.dtype == np.float32 and image.shape == (6, 7, 3)
    np.testing.assert_allclose(image, rgb / 255.0, atol=1e-6)
    gray = rgb[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert io.load_image(str(tmp_path / "g.png"), color=False).shape == (6, 7, 1)
    tiled = io.load_image(str(tmp_path / "g.png"))             # gray in colour: repeated
    np.testing.assert_allclose(tiled, np.repeat(gray[:, :, None] / 255.0, 3, axis=2), atol=1e-6)
    with pytest.raises(ConfnetError, match="cannot read the image"):
        io.load_image(str(tmp_path / "missing.png"))


def test_resize_image():
    image = RNG.random((4, 6, 5)).astype(np.float32) * 100 - 50    # 5 channels, any range
    out = io.resize_image(image, (8, 12), interp_order=0)
    assert out.shape == (8, 12, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out, image.repeat(2, axis=0).repeat(2, axis=1))
    smooth = io.resize_image(image, (3, 3))
    assert smooth.shape == (3, 3, 5)
    assert image.min() <= smooth.min() and smooth.max() <= image.max()
    constant = io.resize_image(np.full((2, 2, 1), 7.0), (5, 4))
    assert constant.shape == (5, 4, 1) and (constant == 7).all()
    with pytest.raises(ConfnetError, match="interp_order 5 is not supported"):
        io.resize_image(image, (3, 3), interp_order=5)


def test_oversample_corners_centre_and_mirrors():
    images = [RNG.random((5, 6, 2)).astype(np.float32) for _ in range(2)]
    crops = io.oversample(images, (3, 4))
    assert crops.shape == (20, 3, 4, 2)
    im = images[1]
    expected = [im[0:3, 0:4], im[0:3, 2:6], im[2:5, 0:4], im[2:5, 2:6], im[1:4, 1:5]]
    for k, crop in enumerate(expected):
        np.testing.assert_array_equal(crops[10 + k], crop)
        np.testing.assert_array_equal(crops[15 + k], crop[:, ::-1])
    with pytest.raises(ConfnetError, match="do not fit"):
        io.oversample(images, (6, 6))


def test_blobproto_round_trips():
    array, diff = RNG.random((2, 3, 4)), RNG.random((2, 3, 4))
    blob = io.array_to_blobproto(array, diff)
    assert isinstance(blob, caffe_pb2.BlobProto) and list(blob.shape.dim) == [2, 3, 4]
    np.testing.assert_allclose(io.blobproto_to_array(blob), array, rtol=1e-6)
    np.testing.assert_allclose(io.blobproto_to_array(blob, return_diff=True), diff, rtol=1e-6)
    legacy = caffe_pb2.BlobProto(num=1, channels=2, height=1, width=2, data=[1, 2, 3, 4])
    assert io.blobproto_to_array(legacy).shape == (1, 2, 1, 2)
    arrays = [np.ones((2, 2)), np.arange(3.0)]
    text = io.arraylist_to_blobprotovector_str(arrays)
    vector = caffe_pb2.BlobProtoVector.FromString(text)
    assert len(vector.blobs) == 2
    for back, original in zip(io.blobprotovector_str_to_arraylist(text), arrays):
        np.testing.assert_array_equal(back, original)


def test_datum_round_trips():
    pixels = RNG.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    datum = io.array_to_datum(pixels, label=7)
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 4, 5, 7)
    assert len(datum.data) == 60 and not datum.float_data
    back = io.datum_to_array(datum)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, pixels)
    floats = RNG.random((1, 2, 3))
    datum = io.array_to_datum(floats)
    assert datum.label == 0 and len(datum.float_data) == 6
    np.testing.assert_allclose(io.datum_to_array(datum), floats, rtol=1e-6)
    with pytest.raises(ConfnetError, match="C x H x W"):
        io.array_to_datum(np.zeros((4, 5)))


def test_encoded_datum_is_decoded():
    from confnet.data.datum import encode_image
    pixels = RNG.integers(0, 256, (1, 4, 5), dtype=np.uint8)
    datum = caffe_pb2.Datum(data=encode_image(pixels), encoded=True, label=1)
    np.testing.assert_array_equal(io.datum_to_array(datum), pixels)
