import numpy as np
import pytest

from confnet.data.datum import (
    array_to_datum,
    datum_key,
    datum_to_array,
    decode_datum,
    decode_image,
    encode_image,
)
from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb


@pytest.fixture
def bgr():
    return np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)


def test_key_is_caffe_convert_imageset_format():
    assert datum_key(42, "cat/1.png") == b"00000042_cat/1.png"


def test_raw_uint8_round_trip_through_serialization(bgr):
    raw = array_to_datum(bgr, 3).SerializeToString()
    datum = pb.Datum.FromString(raw)
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 5, 7, 3)
    assert datum.data == bgr.tobytes()  # CHW byte order, as Caffe's CVMatToDatum writes
    image, label = decode_datum(raw)
    assert image.dtype == np.float32 and label == 3
    np.testing.assert_array_equal(image, bgr)


def test_float_round_trip():
    values = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    datum = array_to_datum(values, 1)
    assert not datum.data and len(datum.float_data) == 24
    np.testing.assert_array_equal(datum_to_array(datum), values)


@pytest.mark.parametrize("channels", [1, 3])
def test_encoded_png_round_trip(channels):
    img = np.random.default_rng(2).integers(0, 256, (channels, 6, 9), dtype=np.uint8)
    datum = array_to_datum(None, 7, encoded_bytes=encode_image(img, "png"))
    assert datum.encoded and datum.data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(datum_to_array(datum), img)


def test_encoded_file_holds_rgb_and_decodes_to_bgr():
    from io import BytesIO

    from PIL import Image

    red = Image.new("RGB", (4, 3), (255, 0, 0))
    out = BytesIO()
    red.save(out, format="PNG")
    image = decode_image(out.getvalue())
    assert image.shape == (3, 3, 4)
    assert (image[2] == 255).all() and (image[:2] == 0).all()  # red is the last channel (BGR)
    assert decode_image(out.getvalue(), force_gray=True).shape == (1, 3, 4)


def test_force_color_on_gray_and_errors():
    gray = np.full((1, 2, 2), 9, np.uint8)
    assert decode_image(encode_image(gray), force_color=True).shape == (3, 2, 2)
    with pytest.raises(ConfnetError, match="both"):
        decode_image(encode_image(gray), force_color=True, force_gray=True)
    with pytest.raises(ConfnetError, match="decode"):
        decode_image(b"not an image")


def test_corrupt_datums_are_user_errors():
    with pytest.raises(ConfnetError, match="channels\\*height\\*width"):
        datum_to_array(pb.Datum(channels=1, height=2, width=2, data=b"abc"))
    with pytest.raises(ConfnetError, match="Datum"):
        decode_datum(b"\xff\xff\xff")
