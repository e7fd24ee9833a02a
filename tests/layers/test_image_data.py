"""ImageData layer: batches of listed image files, in order or reshuffled every pass."""

import numpy as np
import pytest
from PIL import Image

from confnet.blob import Blob
from confnet.data.datum import encode_image
from confnet.errors import ConfnetError
from confnet.layers import TEST, TRAIN
from tests.layers.harness import DEVICES, make_layer
from tests.layers.test_memory_data import check_data_gpu


@pytest.fixture
def listed(tmp_path):
    """Five 3 x 5 x 6 BGR images saved as PNG and a list file 'img/<i>.png <label>'."""
    g = np.random.default_rng(3)
    images = g.integers(0, 256, (5, 3, 5, 6), dtype=np.uint8)
    (tmp_path / "img").mkdir()
    lines = []
    for i, img in enumerate(images):
        (tmp_path / "img" / f"{i}.png").write_bytes(encode_image(img, "png"))
        lines.append(f"img/{i}.png {10 + i}\n")
    (tmp_path / "list.txt").write_text("".join(lines))
    return tmp_path, images.astype(np.float64)


def image_layer(folder, params="", transform="", phase=TEST, batch=2, dtype=np.float64):
    layer = make_layer(f'type: "ImageData" top: "data" top: "label" {transform} '
                       f'image_data_param {{ source: "{folder}/list.txt" batch_size: {batch} '
                       f'root_folder: "{folder}/" {params} }}', phase, dtype=dtype)
    top = [Blob(), Blob()]
    layer.setup([], top)
    return layer, top


def batches(layer, top, count):
    out = []
    for _ in range(count):
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


def test_batches_follow_the_list_and_cycle_with_crop_mean_and_scale(listed):
    folder, images = listed
    layer, top = image_layer(folder, transform='transform_param { scale: 0.5 crop_size: 3 '
                                               'mean_value: 1 mean_value: 2 mean_value: 3 }')
    assert top[0].shape == (2, 3, 3, 3) and top[1].shape == (2,)
    mean = np.array([1.0, 2.0, 3.0])[:, None, None]
    order = [0, 1, 2, 3, 4, 0, 1, 2]
    for b, (data, label) in enumerate(batches(layer, top, 4)):
        idx = order[2 * b:2 * b + 2]
        np.testing.assert_allclose(data, (images[idx][:, :, 1:4, 1:4] - mean) * 0.5)
        np.testing.assert_array_equal(label, [10 + i for i in idx])


def test_gray_and_resized_images(listed):
    folder, _ = listed
    layer, top = image_layer(folder, "is_color: false")
    layer.forward([], top)
    gray = [np.asarray(Image.open(folder / "img" / f"{i}.png").convert("L")) for i in (0, 1)]
    np.testing.assert_array_equal(top[0].data[:, 0], gray)
    assert top[0].shape == (2, 1, 5, 6)
    layer, top = image_layer(folder, "new_height: 4 new_width: 9")
    layer.forward([], top)
    assert top[0].shape == (2, 3, 4, 9)


def test_shuffle_gives_every_image_once_per_pass_in_new_orders(listed):
    folder, images = listed
    layer, top = image_layer(folder, "shuffle: true", batch=5)
    orders = []
    for data, label in batches(layer, top, 4):
        order = (label - 10).astype(int)
        assert sorted(order) == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(data, images[order])
        orders.append(tuple(order))
    assert len(set(orders)) > 1


def test_rand_skip_starts_inside_the_list(listed):
    folder, _ = listed
    layer, top = image_layer(folder, "rand_skip: 5", batch=5)
    start = int(batches(layer, top, 1)[0][1][0]) - 10
    layer.forward([], top)
    np.testing.assert_array_equal(top[1].data - 10, [(start + i) % 5 for i in range(5)])


def test_cursor_state_replays_shuffled_mirrored_batches_across_passes(listed):
    folder, _ = listed
    layer, top = image_layer(folder, "shuffle: true", "transform_param { mirror: true }",
                             TRAIN, batch=3)
    batches(layer, top, 1)
    state = layer.cursor_state()
    expected = batches(layer, top, 3)
    layer.restore_cursor(*state)
    for (data, label), (want_data, want_label) in zip(batches(layer, top, 3), expected):
        np.testing.assert_array_equal(data, want_data)
        np.testing.assert_array_equal(label, want_label)


def test_missing_list_or_image_is_a_one_line_error_naming_it(listed, tmp_path):
    folder, _ = listed
    with pytest.raises(ConfnetError, match="nothing.txt"):
        make_layer('type: "ImageData" top: "d" top: "l" image_data_param { '
                   f'source: "{tmp_path}/nothing.txt" batch_size: 1 }}').setup([], [Blob(), Blob()])
    (folder / "img" / "1.png").unlink()
    with pytest.raises(ConfnetError, match=r"1\.png") as info:
        image_layer(folder)
    assert "\n" not in str(info.value)


def test_old_transformation_fields_are_refused(listed):
    folder, _ = listed
    with pytest.raises(ConfnetError, match="transform_param"):
        image_layer(folder, "mirror: true")


@pytest.mark.parametrize("device", DEVICES)
def test_gpu(device, listed):
    folder, _ = listed
    check_data_gpu(device, lambda: image_layer(
        folder, "shuffle: true", 'transform_param { crop_size: 3 mirror: true scale: 0.5 }',
        phase=TRAIN, batch=3, dtype=np.float32))
