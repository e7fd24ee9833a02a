import numpy as np
import pytest

from confnet.data.mean import save_mean
from confnet.data.transformer import DataTransformer
from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb


def batch(n=4, c=3, h=6, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w)).astype(np.float32)


def param(**fields):
    mean_value = fields.pop("mean_value", [])
    p = pb.TransformationParameter(**fields)
    p.mean_value.extend(mean_value)
    return p


def test_identity_by_default():
    x = batch()
    out = DataTransformer(param(), pb.TRAIN, np.random.default_rng(0)).transform(x)
    np.testing.assert_array_equal(out, x)
    assert out is not x


def test_test_phase_center_crop_mean_value_scale():
    x = batch(h=7, w=8)
    t = DataTransformer(param(crop_size=4, scale=0.5, mean_value=[10, 20, 30]), "TEST",
                        np.random.default_rng(0))
    out = t.transform(x)
    expected = np.empty((4, 3, 4, 4), np.float32)
    for n in range(4):
        for c in range(3):
            expected[n, c] = (x[n, c, 1:5, 2:6] - [10, 20, 30][c]) * 0.5  # (7-4)//2, (8-4)//2
    np.testing.assert_allclose(out, expected)
    assert t.output_shape((3, 7, 8)) == (3, 4, 4)


def test_train_crops_and_flips_are_valid_and_varied():
    x = batch(n=64, c=2, h=5, w=6)
    t = DataTransformer(param(crop_size=3, mirror=True, scale=2.0, mean_value=[1.5]), pb.TRAIN,
                        np.random.default_rng(7))
    out = t.transform(x)
    seen = set()
    for n in range(64):
        found = [(h, w, f) for h in range(3) for w in range(4) for f in (False, True)
                 if np.allclose(out[n], _crop(x[n], h, w, f, 3, mean=1.5) * 2.0)]
        assert found, f"sample {n} is not a crop/flip of its input"
        seen.update(found)
    assert len(seen) > 12  # offsets and flips really are random
    assert {f for _, _, f in seen} == {False, True}


def test_same_seed_same_result():
    p = param(crop_size=3, mirror=True)
    x = batch()
    a = DataTransformer(p, pb.TRAIN, np.random.default_rng(3)).transform(x)
    b = DataTransformer(p, pb.TRAIN, np.random.default_rng(3)).transform(x)
    np.testing.assert_array_equal(a, b)


def test_mean_file_is_cropped_with_the_image(tmp_path):
    x = batch(n=8, c=3, h=5, w=5)
    mean = np.random.default_rng(1).uniform(0, 255, (3, 5, 5)).astype(np.float32)
    save_mean(mean, tmp_path / "mean.binaryproto")
    mean_file = str(tmp_path / "mean.binaryproto")
    t = DataTransformer(param(crop_size=3, mirror=True, mean_file=mean_file), pb.TRAIN,
                        np.random.default_rng(2))
    out = t.transform(x)
    for n in range(8):
        assert any(np.allclose(out[n], _crop(x[n] - mean, h, w, f, 3))
                   for h in range(3) for w in range(3) for f in (False, True))


def test_mean_file_and_value_errors(tmp_path):
    with pytest.raises(ConfnetError, match="both mean_file"):
        DataTransformer(param(mean_file="m.binaryproto", mean_value=[1]), pb.TRAIN)
    with pytest.raises(ConfnetError, match="not found"):
        DataTransformer(param(mean_file=str(tmp_path / "none")), pb.TRAIN)
    save_mean(np.zeros((3, 4, 4)), tmp_path / "m")
    t = DataTransformer(param(mean_file=str(tmp_path / "m")), pb.TEST)
    with pytest.raises(ConfnetError, match="shape"):
        t.transform(batch(h=5, w=5))
    with pytest.raises(ConfnetError, match="mean_value"):
        DataTransformer(param(mean_value=[1, 2]), pb.TEST).transform(batch())
    with pytest.raises(ConfnetError, match="crop_size 9"):
        DataTransformer(param(crop_size=9), pb.TEST).transform(batch())


def test_images_of_different_sizes_need_a_crop():
    images = [np.zeros((1, 5, 5), np.float32), np.ones((1, 6, 7), np.float32)]
    t = DataTransformer(param(crop_size=4), pb.TEST)
    assert t.transform_images(images).shape == (2, 1, 4, 4)
    with pytest.raises(ConfnetError, match="differ in size"):
        DataTransformer(param(), pb.TEST).transform_images(images)


def _crop(image, h, w, flip, size, mean=0.0):
    out = image[:, h:h + size, w:w + size] - mean
    return out[:, :, ::-1] if flip else out
