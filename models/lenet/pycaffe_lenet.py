"""A pycaffe script on confnet: LeNet written with NetSpec, trained with SGDSolver.step, then
used through caffe.Classifier. The only confnet-specific line is the import.

    python models/lenet/pycaffe_lenet.py --out /tmp/lenet_pycaffe
    python models/lenet/pycaffe_lenet.py --train-lmdb data/mnist_train_lmdb \\
        --test-lmdb data/mnist_test_lmdb --iters 1000        # the demo's real digits

Without LMDBs it renders its own digits: the glyphs 0-9 of Pillow's default font at random
sizes, positions and stroke widths, with noise, 28x28 gray (written as LMDBs of Datum records,
as convert_imageset would).
"""

import argparse
import os
import shutil
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from confnet import caffe  # pycaffe: import caffe
from confnet.caffe import layers as L
from confnet.caffe import params as P
from confnet.data.lmdb_io import LMDBWriter


def lenet(source, batch_size):
    """LeNet as pycaffe's LeNet tutorial writes it (scale 1/256 instead of 1/255)."""
    n = caffe.NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=source,
                             transform_param={"scale": 1.0 / 256}, ntop=2)
    body(n, n.data)
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    n.accuracy = L.Accuracy(n.score, n.label)
    return n.to_proto()


def deploy(batch_size=1):
    n = caffe.NetSpec()
    n.data = L.Input(shape={"dim": [batch_size, 1, 28, 28]})
    body(n, n.data)
    n.prob = L.Softmax(n.score)
    return n.to_proto()


def body(n, data):
    xavier = {"type": "xavier"}
    n.conv1 = L.Convolution(data, kernel_size=5, num_output=20, weight_filler=xavier)
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=xavier)
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=xavier)
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=xavier)


def render_digits(count, seed):
    """``count`` 28x28 uint8 images of digits (labels cycle 0-9) and their labels."""
    rng = np.random.default_rng(seed)
    images, labels = np.zeros((count, 28, 28), np.uint8), np.arange(count) % 10
    fonts = {size: ImageFont.load_default(size=size) for size in range(16, 23)}
    for i, label in enumerate(labels):
        image = Image.new("L", (28, 28))
        draw = ImageDraw.Draw(image)
        font = fonts[int(rng.integers(16, 23))]
        stroke = int(rng.integers(0, 2))
        left, top, right, bottom = draw.textbbox((0, 0), str(label), font=font,
                                                 stroke_width=stroke)
        x = rng.integers(2, max(3, 26 - (right - left))) - left
        y = rng.integers(2, max(3, 26 - (bottom - top))) - top
        draw.text((x, y), str(label), fill=int(rng.integers(180, 256)), font=font,
                  stroke_width=stroke, stroke_fill=255)
        noise = rng.normal(0, 20, (28, 28))
        images[i] = np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_lmdb(path, images, labels):
    shutil.rmtree(path, ignore_errors=True)     # this script's own data from an earlier run
    with LMDBWriter(path) as db:
        for i, (image, label) in enumerate(zip(images, labels)):
            datum = caffe.io.array_to_datum(image[np.newaxis], int(label))
            db.put(f"{i:08d}_{i}.png".encode(), datum.SerializeToString())


def write_solver(path, train_net, test_net, out):
    solver = caffe.proto.caffe_pb2.SolverParameter(
        train_net=train_net, test_net=[test_net], test_iter=[10], test_interval=10**6,
        base_lr=0.04, momentum=0.9, weight_decay=5e-4, lr_policy="inv", gamma=1e-4,
        power=0.75, display=0, max_iter=10**6, snapshot_prefix=os.path.join(out, "lenet"),
        random_seed=1)
    with open(path, "w") as f:
        f.write(str(solver))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples/lenet_pycaffe", help="folder for the files")
    parser.add_argument("--train-lmdb", help="train on this LMDB (default: rendered digits)")
    parser.add_argument("--test-lmdb", help="test on this LMDB (default: rendered digits)")
    parser.add_argument("--iters", type=int, default=200, help="SGD iterations")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()

    train_lmdb, test_lmdb = args.train_lmdb, args.test_lmdb
    if not (train_lmdb and test_lmdb):
        train_lmdb, test_lmdb = (os.path.join(args.out, f"{s}_lmdb") for s in ("train", "test"))
        write_lmdb(train_lmdb, *render_digits(2000, seed=0))
        write_lmdb(test_lmdb, *render_digits(500, seed=1))

    # NetSpec writes the prototxts, as in pycaffe's LeNet tutorial.
    files = {name: os.path.join(args.out, f"lenet_auto_{name}.prototxt")
             for name in ("train", "test", "deploy")}
    for name, net in (("train", lenet(train_lmdb, 64)), ("test", lenet(test_lmdb, 50)),
                      ("deploy", deploy())):
        with open(files[name], "w") as f:
            f.write(str(net))
    solver_file = os.path.join(args.out, "lenet_auto_solver.prototxt")
    write_solver(solver_file, files["train"], files["test"], args.out)

    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(solver_file)
    print("blobs:", [(k, v.data.shape) for k, v in solver.net.blobs.items()][:4], "...")
    for it in range(0, args.iters, 25):
        solver.step(min(25, args.iters - it))
        print(f"iteration {solver.iter}: train loss {float(solver.net.blobs['loss'].data):.4f}")
    accuracy = np.mean([float(solver.test_nets[0].forward()["accuracy"]) for _ in range(10)])
    print(f"test accuracy (500 images): {accuracy:.3f}")
    weights = os.path.join(args.out, "lenet_auto.caffemodel")
    solver.net.save(weights)

    # Classify test images saved as PNG files, the way a pycaffe user loads images.
    net = caffe.Classifier(files["deploy"], weights, image_dims=(28, 28), raw_scale=255,
                           input_scale=1.0 / 256)
    images, labels = render_digits(50, seed=2)
    paths = []
    for i, image in enumerate(images):
        paths.append(os.path.join(args.out, f"digit_{i}.png"))
        Image.fromarray(image).save(paths[-1])
    loaded = [caffe.io.load_image(path, color=False) for path in paths]
    predicted = net.predict(loaded, oversample=False).argmax(axis=1)
    correct = float(np.mean(predicted == labels))
    print(f"Classifier: {int(correct * len(labels))}/{len(labels)} PNG digits right; "
          f"first ten predicted {predicted[:10].tolist()}, true {labels[:10].tolist()}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return accuracy, correct


if __name__ == "__main__":
    main()
