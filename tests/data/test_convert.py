import logging
import os

import numpy as np
import pytest
from PIL import Image

from confnet.data.convert import convert_imageset, read_labels
from confnet.data.datum import decode_datum
from confnet.data.lmdb_io import LMDBReader
from confnet.data.mean import compute_mean
from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb


def make_tree(root, classes=("cat", "dog"), per_class=3, size=(5, 4)):
    """Class folders of RGB PNGs; returns {relative path: (BGR CHW uint8, label)}."""
    rng = np.random.default_rng(0)
    images = {}
    for label, name in enumerate(classes):
        os.makedirs(root / name)
        for i in range(per_class):
            rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(rgb).save(root / name / f"{i}.png")
            images[f"{name}/{i}.png"] = (rgb[:, :, ::-1].transpose(2, 0, 1), label)
    return images


def read_all(db):
    with LMDBReader(db) as reader:
        return {key.decode(): decode_datum(value) for key, value in reader.items()}


def test_class_folders(tmp_path):
    expected = make_tree(tmp_path / "src")
    (tmp_path / "src" / "dog" / "notes.txt").write_text("not an image")
    result = convert_imageset(tmp_path / "src", tmp_path / "out" / "db", workers=2,
                              processes=False, progress=False)
    assert (result.written, result.skipped, result.labels) == (6, 0, ["cat", "dog"])
    assert str(result).startswith("6 images written, 0 unreadable skipped")
    assert (tmp_path / "out" / "db" / "labels.txt").read_text() == "cat\ndog\n"
    entries = read_all(tmp_path / "out" / "db")
    assert list(entries) == [f"{i:08d}_{path}" for i, path in enumerate(sorted(expected))]
    for key, (image, label) in entries.items():
        want, want_label = expected[key[9:]]
        np.testing.assert_array_equal(image, want)
        assert label == want_label


def test_list_file_with_a_corrupt_image(tmp_path, caplog):
    expected = make_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    paths = sorted(expected) + ["cat/broken.png"]
    (tmp_path / "list.txt").write_text("".join(f"{p} {i % 5}\n" for i, p in enumerate(paths)))
    with caplog.at_level(logging.WARNING):
        result = convert_imageset(tmp_path / "list.txt", tmp_path / "db",
                                  root=tmp_path / "imgs", shuffle=True, seed=3, gray=True,
                                  resize_height=3, resize_width=2, progress=False)
    assert (result.written, result.skipped, result.labels) == (6, 1, None)
    assert result.bad[0][0].endswith("broken.png") and "broken.png" in caplog.text
    entries = read_all(tmp_path / "db")
    assert sorted(key[9:] for key in entries) == sorted(expected)
    assert all(image.shape == (1, 3, 2) for image, _ in entries.values())
    assert not (tmp_path / "db" / "labels.txt").exists()


def test_fail_on_bad_image_leaves_no_db(tmp_path):
    make_tree(tmp_path / "src")
    (tmp_path / "src" / "cat" / "zzz.jpg").write_bytes(b"garbage")
    with pytest.raises(ConfnetError, match="zzz.jpg"):
        convert_imageset(tmp_path / "src", tmp_path / "db", on_bad_image="fail", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_encoded_keeps_files_and_reencodes_when_needed(tmp_path):
    expected = make_tree(tmp_path / "src", per_class=2)
    convert_imageset(tmp_path / "src", tmp_path / "png", encoded=True, progress=False)
    assert first_datum(tmp_path / "png").data == (tmp_path / "src/cat/0.png").read_bytes()
    for key, (image, _) in read_all(tmp_path / "png").items():
        np.testing.assert_array_equal(image, expected[key[9:]][0])
    convert_imageset(tmp_path / "src", tmp_path / "gray", encoded=True, encode_type="png",
                     gray=True, progress=False)
    assert all(image.shape == (1, 4, 5) for image, _ in read_all(tmp_path / "gray").values())
    convert_imageset(tmp_path / "src", tmp_path / "jpg", encoded=True, encode_type="jpg",
                     progress=False)
    assert first_datum(tmp_path / "jpg").data.startswith(b"\xff\xd8")
    convert_imageset(tmp_path / "src", tmp_path / "raw", encode_type="png", progress=False)
    assert not first_datum(tmp_path / "raw").encoded  # encode_type alone does not encode


def first_datum(db):
    with LMDBReader(db) as reader:
        return pb.Datum.FromString(reader.read_batch(1)[0])


def test_check_size_and_source_errors(tmp_path):
    make_tree(tmp_path / "src")
    Image.new("RGB", (9, 9)).save(tmp_path / "src" / "dog" / "big.png")
    with pytest.raises(ConfnetError, match="big.png.*3x9x9"):
        convert_imageset(tmp_path / "src", tmp_path / "db", check_size=True, progress=False)
    with pytest.raises(ConfnetError, match="does not exist"):
        convert_imageset(tmp_path / "nothing", tmp_path / "db", progress=False)
    (tmp_path / "list.txt").write_text("a.png 1\nb.png cat\n")
    with pytest.raises(ConfnetError, match="list.txt:2"):
        convert_imageset(tmp_path / "list.txt", tmp_path / "db", progress=False)


def test_each_database_keeps_its_own_labels(tmp_path, caplog):
    """Train and test converted into one folder: each database carries its class names, and
    numbering other classes than its neighbour is a warning naming the classes."""
    make_tree(tmp_path / "train")
    (tmp_path / "test" / "bird").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "bird" / "b.png")
    (tmp_path / "test" / "cat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "cat" / "c.png")
    convert_imageset(tmp_path / "train", tmp_path / "data" / "train_lmdb", progress=False)
    with caplog.at_level(logging.WARNING):
        convert_imageset(tmp_path / "test", tmp_path / "data" / "test_lmdb", progress=False)
    assert read_labels(tmp_path / "data" / "train_lmdb") == ["cat", "dog"]
    assert read_labels(tmp_path / "data" / "test_lmdb") == ["bird", "cat"]
    assert "classes only here: bird; only in 'train_lmdb': dog" in caplog.text
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["test_lmdb", "train_lmdb"]


def test_processes_and_progress_bar(tmp_path, capsys):
    make_tree(tmp_path / "src")
    result = convert_imageset(tmp_path / "src", tmp_path / "db", workers=2, processes=True,
                              progress=True)
    assert result.written == 6
    assert "6/6" in capsys.readouterr().err


def test_compute_mean(tmp_path):
    expected = make_tree(tmp_path / "src")
    convert_imageset(tmp_path / "src", tmp_path / "db", progress=False)
    mean = compute_mean(tmp_path / "db")
    assert mean.dtype == np.float32 and mean.shape == (3, 4, 5)
    want = np.mean([image.astype(np.float64) for image, _ in expected.values()], axis=0)
    np.testing.assert_allclose(mean, want, rtol=1e-6)


def test_load_image_and_read_list_file(tmp_path):
    from confnet.data.convert import load_image, read_list_file

    expected = make_tree(tmp_path)
    (tmp_path / "list.txt").write_text("# comment\ncat/0.png 4\n\n")
    assert read_list_file(tmp_path / "list.txt") == [("cat/0.png", str(tmp_path / "cat/0.png"), 4)]
    np.testing.assert_array_equal(load_image(tmp_path / "cat/0.png"), expected["cat/0.png"][0])
    assert load_image(tmp_path / "cat/0.png", 2, 3, gray=True).shape == (1, 2, 3)


def test_a_warning_does_not_glue_onto_the_progress_bar():
    """On a terminal, the bar's line is cleared before a message and drawn again after it."""
    import io

    from confnet.data.convert import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = _Progress(4, True, stream)
    bar.advance()
    with bar.set_aside():
        stream.write("WARNING skipping 'x.png'\n")
    assert "\r\033[KWARNING skipping 'x.png'\n\r[" in stream.getvalue()
