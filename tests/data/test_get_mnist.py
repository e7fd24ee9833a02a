import gzip
import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

from confnet.errors import ConfnetError

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "get_mnist.py")


@pytest.fixture(scope="module")
def get_mnist():
    spec = importlib.util.spec_from_file_location("get_mnist", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_idx(path, array, gz):
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    digits = {}
    for split, prefix, n, gz in (("train", "train", 12, True), ("test", "t10k", 5, False)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        suffix = ".gz" if gz else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        digits[split] = (images, labels)
    return tmp_path, digits


def test_idx_files_to_pngs_idempotent(get_mnist, idx_dir, tmp_path, capsys):
    source, digits = idx_dir
    out = tmp_path / "mnist"
    assert get_mnist.main(["--idx", str(source), "--out", str(out)]) == 0
    for split, (images, labels) in digits.items():
        for n, (image, label) in enumerate(zip(images, labels)):
            png = np.asarray(Image.open(out / split / str(label) / f"{n:05d}.png"))
            np.testing.assert_array_equal(png, image)
    assert json.loads((out / ".complete").read_text())["train"] == 12
    stamp = os.stat(out / "train" / "0" / "00000.png").st_mtime_ns
    assert get_mnist.main(["--idx", str(source), "--out", str(out)]) == 0
    assert "already holds" in capsys.readouterr().out
    assert os.stat(out / "train" / "0" / "00000.png").st_mtime_ns == stamp
    assert get_mnist.main(["--idx", str(source), "--out", str(out), "--force"]) == 0
    assert sorted(os.listdir(out)) == [".complete", "test", "train"]


def test_missing_or_bad_idx(get_mnist, tmp_path, capsys):
    assert get_mnist.main(["--idx", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ConfnetError, match="truncated"):
        get_mnist.read_idx(str(tmp_path / "bad"))


def test_stratified_split(get_mnist):
    labels = np.repeat(np.arange(10), 50)
    images = np.arange(500)[:, None, None] * np.ones((1, 2, 2), np.int64)
    splits = get_mnist.stratified_split(images, labels, train_per_class=40, seed=0)
    train_images, train_labels = splits["train"]
    test_images, test_labels = splits["test"]
    assert np.bincount(train_labels).tolist() == [40] * 10
    assert np.bincount(test_labels).tolist() == [10] * 10
    assert sorted(np.concatenate([train_images, test_images])[:, 0, 0]) == list(range(500))
    assert (train_labels[:-1] <= train_labels[1:]).mean() < 0.8  # shuffled, not sorted
    np.testing.assert_array_equal(train_images[:, 0, 0] // 50, train_labels)
    again = get_mnist.stratified_split(images, labels, train_per_class=40, seed=0)
    np.testing.assert_array_equal(again["train"][0], train_images)
