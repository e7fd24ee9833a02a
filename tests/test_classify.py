"""confnet classify: Caffe's preprocessing (resize, centre crop, mean, scale, channel order),
top-k classes per image, CSV output; predictions checked against Net.forward on arrays the test
prepares itself from the image files."""

import csv

import numpy as np
import pytest
from PIL import Image

import confnet
from confnet.classify import BATCH
from tests.test_cli import one_error_line, run, write
from tests.test_models import model_file, randomize

DIGITS = [str(d) for d in range(10)]


@pytest.fixture
def lenet(tmp_path):
    """LeNet's deploy net with random weights, saved as a .caffemodel."""
    net = confnet.Net(model_file("lenet", "deploy"), confnet.TEST)
    randomize(net, seed=5)
    weights = str(tmp_path / "lenet.caffemodel")
    net.save(weights)
    return net, weights


@pytest.fixture
def digit_folder(tmp_path):
    """A folder tree of random 28x28 gray PNGs (more than one classify batch)."""
    g = np.random.default_rng(0)
    paths = []
    for i in range(BATCH + 6):
        folder = tmp_path / "digits" / str(i % 3)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:03d}.png"
        Image.fromarray(g.integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return tmp_path / "digits", sorted(paths)


def test_classify_folder_matches_net_forward(tmp_path, lenet, digit_folder):
    net, weights = lenet
    folder, paths = digit_folder
    labels = write(tmp_path / "labels.txt", "\n".join(f"digit{d}" for d in DIGITS) + "\n")
    out = tmp_path / "predictions.csv"
    code, output = run(["classify", "--model", model_file("lenet", "deploy"), "--weights",
                        weights, "--resize", "28", "--scale", "0.00390625", "--labels", labels,
                        "--top-k", "3", "--out", str(out), str(folder)])
    assert code == 0, output
    # The deploy net's input: the centre 26x26 of each 28x28 digit, scaled by 1/256.
    images = np.stack([np.asarray(Image.open(p), np.float32)[1:27, 1:27] for p in paths])
    prob = net.forward(data=images[:, None] / 256.0)["prob"]
    lines = [line for line in output.splitlines() if line.startswith(str(folder))]
    assert len(lines) == len(paths)
    for line, path, p in zip(lines, paths, prob):
        top = np.argsort(-p)[:3]
        assert line == f"{path}: " + ", ".join(f"digit{c} ({p[c]:.4f})" for c in top)
    with open(out, newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["path", "class1", "prob1", "class2", "prob2", "class3", "prob3"]
    assert [r[0] for r in rows[1:]] == paths
    assert [r[1] for r in rows[1:]] == [f"digit{np.argmax(p)}" for p in prob]
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], prob.max(axis=1), rtol=1e-5)


def test_mean_colour_order_and_softmax(tmp_path):
    """A colour net without a Softmax: BGR minus the mean values, times the scale; the output
    becomes probabilities."""
    net_text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4
            dim: 6 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
            inner_product_param { num_output: 4 } }
    """
    model = write(tmp_path / "net.prototxt", net_text)
    net = confnet.Net(model, confnet.TEST)
    randomize(net, seed=1)
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    rgb = np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    mean = np.array([10.0, 20.0, 30.0])
    for flag, order in (([], [2, 1, 0]), (["--rgb"], [0, 1, 2])):
        code, output = run(["classify", "--model", model, "--weights", weights, "--mean",
                            "10,20,30", "--scale", "0.01", "--top-k", "4", *flag,
                            str(tmp_path / "a.png")])
        assert code == 0, output
        chw = rgb.transpose(2, 0, 1)[order].astype(np.float32)
        logits = net.forward(data=((chw - mean[:, None, None]) * 0.01)[None])["ip"][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        expected = ", ".join(f"{c} ({p[c]:.4f})" for c in np.argsort(-p))
        assert output.strip().endswith(f"a.png: {expected}"), output


def test_classify_errors_are_one_line(tmp_path, lenet):
    _, weights = lenet
    model = model_file("lenet", "deploy")
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["classify", "--model", model, "--weights", weights]
    assert "no image files" in one_error_line(*run(base + [str(empty)]))
    assert "--resize 2x2x2" in one_error_line(*run(base + ["--resize", "2x2x2", str(empty)]))
    assert "--mean abc" in one_error_line(*run(base + ["--mean", "abc", str(empty)]))
    bad = write(tmp_path / "bad.png", "not an image")
    assert "bad.png: cannot read the image" in one_error_line(*run(base + [bad]))
