"""WindowData layer: windows cut from images, padded with context and warped, as in Caffe."""

import math

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.data.datum import encode_image
from confnet.data.mean import save_mean
from confnet.errors import ConfnetError
from confnet.layers import TRAIN
from confnet.layers.window_data import _resize_linear
from tests.layers.harness import DEVICES, make_layer
from tests.layers.test_memory_data import check_data_gpu

# (class_index, overlap, x1, y1, x2, y2) per image; with fg_threshold 0.5 and bg_threshold 0.3
# image 0 has one foreground window (class 2), image 1 one background window (overlap 0.1) and
# one window that is neither (0.4).
FG = (2, 0.8, 3, 4, 10, 11)
BG = (7, 0.1, 12, 2, 19, 9)
NEITHER = (1, 0.4, 0, 0, 5, 5)


@pytest.fixture
def scene(tmp_path):
    g = np.random.default_rng(11)
    images = g.integers(0, 256, (2, 3, 20, 24), dtype=np.uint8)
    records = []
    for i, (img, windows) in enumerate(zip(images, [[FG], [BG, NEITHER]])):
        (tmp_path / f"im{i}.png").write_bytes(encode_image(img, "png"))
        lines = [f"# {i}", f"im{i}.png", "3", "20", "24", str(len(windows))]
        lines += [" ".join(map(str, w)) for w in windows]
        records.append("\n".join(lines))
    (tmp_path / "windows.txt").write_text("\n".join(records) + "\n")
    return tmp_path, images.astype(np.float64)


def window_layer(folder, params="", transform="crop_size: 8", batch=4, fg_fraction=0.5,
                 dtype=np.float64):
    layer = make_layer(f'type: "WindowData" top: "data" top: "label" '
                       f'transform_param {{ {transform} }} window_data_param {{ '
                       f'source: "{folder}/windows.txt" root_folder: "{folder}/" '
                       f'batch_size: {batch} fg_threshold: 0.5 bg_threshold: 0.3 '
                       f'fg_fraction: {fg_fraction} {params} }}', TRAIN, dtype=dtype)
    top = [Blob(), Blob()]
    layer.setup([], top)
    layer.forward([], top)
    return layer, top


def cut(image, window):
    _, _, x1, y1, x2, y2 = window
    return image[:, y1:y2 + 1, x1:x2 + 1]


def test_background_then_foreground_windows_with_mean_and_scale(scene):
    folder, images = scene
    _, top = window_layer(folder, "scale: 0.5 cache_images: true",
                          "crop_size: 8 mean_value: 10 mean_value: 20 mean_value: 30")
    assert top[0].shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(top[1].data, [0, 0, 2, 2])  # background label forced to 0
    mean = np.array([10.0, 20.0, 30.0])[:, None, None]
    want = [cut(images[1], BG)] * 2 + [cut(images[0], FG)] * 2
    np.testing.assert_allclose(top[0].data, (np.array(want) - mean) * 0.5, rtol=1e-6)


def test_mirror_flips_some_windows(scene):
    folder, images = scene
    _, top = window_layer(folder, transform="crop_size: 8 mirror: true", batch=16)
    window = cut(images[0], FG)
    fg = top[0].data[8:]
    flipped = [np.array_equal(x, window[:, :, ::-1]) for x in fg]
    kept = [np.array_equal(x, window) for x in fg]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_mean_file_is_centre_cropped(scene, tmp_path):
    folder, images = scene
    mean = np.random.default_rng(2).uniform(0, 255, (3, 12, 12)).astype(np.float32)
    save_mean(mean, str(tmp_path / "mean.binaryproto"))
    _, top = window_layer(folder, transform=f'crop_size: 8 mean_file: "{tmp_path}/mean.binaryproto"')
    np.testing.assert_allclose(top[0].data[2], cut(images[0], FG) - mean[:, 2:10, 2:10],
                               rtol=1e-5)


def reference_resize(image, out_h, out_w):
    """OpenCV's INTER_LINEAR, one output pixel at a time."""
    channels, height, width = image.shape
    out = np.zeros((channels, out_h, out_w))

    def tap(dst, src_size, dst_size):
        pos = (dst + 0.5) * src_size / dst_size - 0.5
        lo = math.floor(pos)
        frac = pos - lo
        if lo < 0:
            return 0, 0, 0.0
        if lo >= src_size - 1:
            return src_size - 1, src_size - 1, 0.0
        return lo, lo + 1, frac

    for y in range(out_h):
        y0, y1, fy = tap(y, height, out_h)
        for x in range(out_w):
            x0, x1, fx = tap(x, width, out_w)
            top = image[:, y0, x0] * (1 - fx) + image[:, y0, x1] * fx
            bottom = image[:, y1, x0] * (1 - fx) + image[:, y1, x1] * fx
            out[:, y, x] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("out_size", [(9, 9), (5, 13), (20, 3)])
def test_resize_matches_opencv_linear_rule(out_size):
    image = np.random.default_rng(4).integers(0, 256, (3, 10, 7), dtype=np.uint8)
    got = _resize_linear(image, *out_size)
    np.testing.assert_allclose(got, reference_resize(image.astype(np.float64), *out_size),
                               atol=0.5 + 1e-4)


def test_context_pad_clipped_at_the_image_corner(scene, tmp_path):
    """Box (0, 0)-(7, 7), crop 10, pad 1: Caffe's arithmetic expands it by 10/8 to (-1, -1)-(9, 9)
    (11 pixels), clips it to (0, 0)-(9, 9) and warps those 10 pixels to round(10 * 10/11) = 9,
    placed after round(1 * 10/11) = 1 pixel of zeros (on the right instead when mirrored)."""
    folder, images = scene
    (folder / "windows.txt").write_text("# 0\nim0.png\n3\n20\n24\n1\n3 0.9 0 0 7 7\n")
    _, top = window_layer(folder, "context_pad: 1",
                          "crop_size: 10 mirror: true", batch=8,
                          fg_fraction=1)
    warped = reference_resize(images[0][:, 0:10, 0:10], 9, 9)
    plain = np.zeros((3, 10, 10))
    plain[:, 1:, 1:] = warped
    mirrored = np.zeros((3, 10, 10))
    mirrored[:, 1:, :9] = warped[:, :, ::-1]
    seen = set()
    for item in top[0].data:
        is_plain = np.abs(item - plain).max() <= 1
        assert is_plain or np.abs(item - mirrored).max() <= 1
        seen.add(is_plain)
    assert seen == {True, False}


def test_square_mode_squares_the_box_about_its_centre(scene):
    """Box (3, 2)-(6, 9) is 4 x 8; squared about its centre (5, 6) it is (1, 2)-(9, 10)."""
    folder, images = scene
    (folder / "windows.txt").write_text("# 0\nim0.png\n3\n20\n24\n1\n3 0.9 3 2 6 9\n")
    _, top = window_layer(folder, 'crop_mode: "square"', "crop_size: 9", batch=1, fg_fraction=1)
    np.testing.assert_array_equal(top[0].data[0], images[0][:, 2:11, 1:10])


def test_cursor_state_replays_the_draws(scene):
    folder, _ = scene
    layer, top = window_layer(folder, transform="crop_size: 8 mirror: true", batch=6)
    state = layer.cursor_state()
    expected = []
    for _ in range(3):
        layer.forward([], top)
        expected.append(top[0].data.copy())
    layer.restore_cursor(*state)
    for want in expected:
        layer.forward([], top)
        np.testing.assert_array_equal(top[0].data, want)


def test_clear_errors(scene, tmp_path):
    folder, _ = scene
    (folder / "im1.png").unlink()
    with pytest.raises(ConfnetError, match=r"im1\.png"):
        window_layer(folder)
    (folder / "windows.txt").write_text("# 0\nim0.png\n3\n20\n24\n2\n3 0.9 0 0 7 7\n")
    with pytest.raises(ConfnetError, match="cut short"):
        window_layer(folder)
    (folder / "windows.txt").write_text("# 0\nim0.png\n3\n20\n24\n1\n3 0.9 0 0 7 7\n")
    with pytest.raises(ConfnetError, match="needs 2 background"):
        window_layer(folder)
    with pytest.raises(ConfnetError, match="window_data_param.scale"):
        window_layer(folder, transform="crop_size: 8 scale: 2")
    with pytest.raises(ConfnetError, match="nothing.txt"):
        make_layer('type: "WindowData" top: "d" top: "l" transform_param { crop_size: 8 } '
                   f'window_data_param {{ source: "{tmp_path}/nothing.txt" batch_size: 1 }}'
                   ).setup([], [Blob(), Blob()])


@pytest.mark.parametrize("device", DEVICES)
def test_gpu(device, scene):
    folder, _ = scene
    check_data_gpu(device, lambda: window_layer(folder, "context_pad: 1", "crop_size: 7 "
                                                "mirror: true", batch=5, dtype=np.float32))
