"""caffe.Classifier and caffe.Detector on a small net whose scores can be computed by hand:
Input (N, 2, 4, 4) -> InnerProduct (3 classes) -> Softmax."""

import numpy as np
import pytest
from PIL import Image

from confnet import caffe
from confnet.errors import ConfnetError

DEPLOY = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 2 dim: 4 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""
RNG = np.random.default_rng(0)


@pytest.fixture
def model(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(DEPLOY)
    weights = str(tmp_path / "w.caffemodel")
    caffe.Net(str(deploy), caffe.TEST).save(weights)
    return str(deploy), weights


def scores(net, chw):
    """Softmax of W x + b for one 2 x 4 x 4 input."""
    w, b = net.params["ip"][0].data, net.params["ip"][1].data
    z = w @ chw.reshape(-1) + b
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


def test_predict_centre_crop(model):
    mean = np.array([0.1, 0.2])
    net = caffe.Classifier(*model, image_dims=(6, 6), mean=mean, raw_scale=2.0,
                           channel_swap=(1, 0))
    images = [RNG.random((6, 6, 2)).astype(np.float32) for _ in range(4)]
    out = net.predict(images, oversample=False)
    assert out.shape == (4, 3)
    for image, row in zip(images, out):
        chw = image[1:5, 1:5].transpose(2, 0, 1)[::-1] * 2.0 - mean.reshape(2, 1, 1)
        np.testing.assert_allclose(row, scores(net, chw), rtol=1e-5)


def test_predict_oversampled_averages_ten_crops(model):
    net = caffe.Classifier(*model, image_dims=(5, 6))
    image = RNG.random((5, 6, 2)).astype(np.float32)
    out = net.predict([image, image * 0.5])
    assert out.shape == (2, 3)
    crops = caffe.io.oversample([image], (4, 4))
    expected = np.mean([scores(net, c.transpose(2, 0, 1)) for c in crops], axis=0)
    np.testing.assert_allclose(out[0], expected, rtol=1e-5)


def test_predict_resizes_to_image_dims(model):
    net = caffe.Classifier(*model)                     # image_dims: the input's 4 x 4
    big = RNG.random((8, 8, 2)).astype(np.float32)
    out = net.predict([big], oversample=False)
    chw = caffe.io.resize_image(big, (4, 4)).transpose(2, 0, 1)
    np.testing.assert_allclose(out[0], scores(net, chw), rtol=1e-5)
    with pytest.raises(ConfnetError, match="smaller than the net's input"):
        caffe.Classifier(*model, image_dims=(3, 3))


def test_detect_windows(model, tmp_path):
    detector = caffe.Detector(*model)
    pixels = RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = str(tmp_path / "im.png")
    Image.fromarray(pixels).save(path)
    windows = [np.array([0, 0, 4, 4]), np.array([2, 3, 10, 11])]
    detector_2ch = _first_two_channels(detector)
    found = detector_2ch.detect_windows([(path, windows)])
    assert [d["filename"] for d in found] == [path, path]
    image = pixels / 255.0
    for d, (y0, x0, y1, x1) in zip(found, windows):
        crop = caffe.io.resize_image(image[y0:y1, x0:x1, :2], (4, 4))
        np.testing.assert_array_equal(d["window"], [y0, x0, y1, x1])
        np.testing.assert_allclose(d["prediction"], scores(detector, crop.transpose(2, 0, 1)),
                                   rtol=1e-4)
    with pytest.raises(ConfnetError, match="detect_windows"):
        detector.detect_selective_search([path])


def _first_two_channels(detector):
    """Have the detector drop the third channel of the RGB windows (the net takes two)."""
    crop = detector.crop
    detector.crop = lambda im, window: crop(im[:, :, :2], window)
    return detector


def test_crop_with_context_pads_with_the_mean(model):
    mean = np.array([0.25, 0.5])
    detector = caffe.Detector(*model, mean=mean, raw_scale=2.0, context_pad=1)
    assert tuple(detector.crop_dims) == (4, 4, 2)
    np.testing.assert_allclose(detector.crop_mean.reshape(-1, 2)[0], mean / 2.0)
    image = RNG.random((8, 8, 2)).astype(np.float32)
    # Window rows 2..5 (4 rows, max inclusive) doubled around their centre 4: rows 0..8, all
    # inside the image, warped to the full 4 x 4 input.
    inner = detector.crop(image, np.array([2, 2, 5, 5]))
    assert inner.shape == (4, 4, 2)
    np.testing.assert_allclose(inner, caffe.io.resize_image(image[0:8, 0:8], (4, 4)), rtol=1e-5)
    corner = detector.crop(image, np.array([0, 0, 3, 3]))    # context leaves the image
    np.testing.assert_allclose(corner[0, 0], mean / 2.0)     # outside: the mean
    assert not np.allclose(corner[2, 2], mean / 2.0)
