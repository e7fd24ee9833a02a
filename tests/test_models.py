"""The model definitions in models/: every net builds and runs, the small ones learn, and nets
written in Caffe's older formats (as the model zoo has them) upgrade and build unchanged.

- Build: each train_val (TRAIN and TEST) and deploy net is read from models/ unchanged, then, in
  memory only, its database-reading data layers become Input layers of the same tops (the
  databases are not here) and its batch is cut to 1-2; it runs forward and backward on random
  inputs, and the deploy net, given the trained weights by layer name, computes what the TEST
  net computes. The ImageNet nets run at their full 224/227 input size.
- Train: LeNet, CIFAR-10 quick, the siamese net and the LSTM train a few hundred iterations with
  their own solver.prototxt on small generated databases (LMDB / HDF5 written in tmp_path, the
  model's data layers pointed at them) until the loss falls clearly.
- Zoo formats: V1 (``layers { type: CONVOLUTION }``) and V0 nets and the old
  ``input: / input_dim:`` deploy header upgrade to the same nets as the files in models/.
"""

import os

import numpy as np
import pytest

import confnet
from confnet.data.datum import array_to_datum, datum_key
from confnet.data.lmdb_io import LMDBWriter
from confnet.data.mean import compute_mean, save_mean
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from confnet.solver import get_solver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")

DATA_LAYERS = ("Data", "ImageData", "HDF5Data", "WindowData", "MemoryData")

# The images each model's databases hold (C, H, W); the data layers may crop them.
IMAGES = {"lenet": (1, 28, 28), "lenet_finetune": (1, 28, 28), "cifar10_quick": (3, 32, 32),
          "cifar10_full": (3, 32, 32), "caffenet": (3, 256, 256), "googlenet": (3, 256, 256),
          "vgg16": (3, 256, 256), "resnet50": (3, 256, 256)}
# The models of confnet issue 4; the ImageNet nets among them run backward only in TRAIN.
ISSUE_MODELS = {"lenet", "cifar10_quick", "cifar10_full", "caffenet", "googlenet", "vgg16",
                "resnet50", "siamese", "lstm_sequence"}
BIG = {"caffenet", "googlenet", "vgg16", "resnet50"}
# Learned values of each deploy net (BatchNorm's statistics not counted): the published sizes of
# CaffeNet, GoogLeNet (without its auxiliary heads), VGG16 and ResNet-50.
PARAMETER_COUNTS = {"lenet": 431080, "cifar10_quick": 145578, "cifar10_full": 89578,
                    "siamese": 431102, "caffenet": 60965224, "googlenet": 6998552,
                    "vgg16": 138357544, "resnet50": 25557032}


def data_shapes(model, b):
    """Top name -> shape of what the model's data layers read, at batch size b."""
    if model == "siamese":
        return {"pair_data": (b, 2, 28, 28), "sim": (b,)}
    if model == "lstm_sequence":   # (T, N, ...): 4 time steps of b streams
        return {"data": (4, b, 1), "cont": (4, b), "target": (4, b, 1)}
    assert model in IMAGES, f"tests/test_models.py: add the image shape of models/{model}"
    return {"data": (b,) + IMAGES[model], "label": (b,)}


def models_with(kind):
    return sorted(name for name in os.listdir(MODELS)
                  if os.path.isfile(os.path.join(MODELS, name, f"{kind}.prototxt")))


def model_file(model, kind):
    return os.path.join(MODELS, model, f"{kind}.prototxt")


# -- rewriting a NetParameter for the tests (the files stay as they are) ---------------------------
def copy_net(net):
    out = pb.NetParameter()
    out.CopyFrom(net)
    return out


def with_input_layers(net, shapes):
    """A copy of ``net`` whose database-reading data layers are Input layers with the same name,
    tops and include/exclude rules, shaped by ``shapes`` (top name -> shape)."""
    out = copy_net(net)
    for layer in out.layer:
        if layer.type not in DATA_LAYERS:
            continue
        replacement = pb.LayerParameter(name=layer.name, type="Input", top=layer.top,
                                        include=layer.include, exclude=layer.exclude)
        crop = layer.transform_param.crop_size
        for top in layer.top:
            shape = shapes[top]
            if crop and len(shape) == 4:
                shape = shape[:2] + (crop, crop)
            replacement.input_param.shape.add(dim=shape)
        layer.CopyFrom(replacement)
    return out


def with_batch(net, batch):
    """A copy of ``net`` whose 4-D Input shapes (N, C, H, W) have N = batch."""
    out = copy_net(net)
    for layer in out.layer:
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                if len(shape.dim) == 4:
                    shape.dim[0] = batch
    return out


def with_data_sources(net, sources, batch, mean_file=None):
    """A copy of ``net`` whose data layers read ``sources[phase]`` in batches of ``batch``
    (and subtract ``mean_file`` where the model subtracts a mean file)."""
    out = copy_net(net)
    for layer in out.layer:
        if layer.type not in DATA_LAYERS:
            continue
        phase = layer.include[0].phase if layer.include else pb.TRAIN
        holder = layer.data_param if layer.type == "Data" else layer.hdf5_data_param
        holder.source = sources[phase]
        holder.batch_size = batch
        if layer.transform_param.HasField("mean_file"):
            layer.transform_param.mean_file = mean_file
    return out


def without_fillers(net):
    """A copy of ``net`` whose parameters start at zero: for nets that take their weights from
    another net (filling VGG16's 138M weights only to replace them takes seconds)."""
    out = copy_net(net)
    for layer in out.layer:
        for name in ("convolution_param", "inner_product_param", "recurrent_param"):
            if layer.HasField(name):
                getattr(layer, name).ClearField("weight_filler")
                getattr(layer, name).ClearField("bias_filler")
    return out


def randomize(net, seed=0):
    """Random weights: He-scaled matrices and filters (so activations neither vanish nor explode
    through 50 layers) and positive per-channel values (BatchNorm variances, Scale factors,
    biases)."""
    g = np.random.default_rng(seed)
    for blobs in net.params.values():
        for blob in blobs:
            shape = blob.shape
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                g.standard_normal(shape, np.float32, out=blob.data)
                blob.data[...] *= np.sqrt(2.0 / fan_in)
            else:
                blob.data[...] = g.uniform(0.5, 1.5, shape)


def fill_random(net, seed=0):
    """Random inputs: class labels in [0, 10), 0/1 similarity, sequence markers, else N(0, 1)."""
    g = np.random.default_rng(seed)
    for layer, tops in zip(net.layers, net.top_ids):
        if layer.type_name != "Input":
            continue
        for name in tops:
            blob = net.blobs[name]
            if name in ("label", "sim"):
                blob.data[...] = g.integers(0, 2 if name == "sim" else 10, blob.shape)
            elif name == "cont":
                blob.data[...] = 1
                blob.data[0] = 0
            else:
                blob.data[...] = g.standard_normal(blob.shape)


# -- generated data sets ----------------------------------------------------------------------------
def class_templates(classes, shape, seed=0):
    """One coarse random pattern per class (blocks of 4x4 pixels), uint8."""
    g = np.random.default_rng(seed)
    c, h, w = shape
    coarse = g.integers(0, 256, (classes, c, -(-h // 4), -(-w // 4)))
    return coarse.repeat(4, axis=2).repeat(4, axis=3)[:, :, :h, :w]


def noisy(template, g, noise=60):
    return np.clip(template + g.integers(-noise, noise + 1, template.shape), 0, 255).astype(np.uint8)


def write_class_lmdb(path, shape, n=200, classes=10, seed=0):
    """An LMDB of n uint8 images of ``shape``: class templates plus noise, labels in key order."""
    g = np.random.default_rng(seed + 1)
    templates = class_templates(classes, shape)
    with LMDBWriter(str(path)) as db:
        for i in range(n):
            label = int(g.integers(classes))
            datum = array_to_datum(noisy(templates[label], g), label)
            db.put(datum_key(i, f"img{i}.png"), datum.SerializeToString())
    return str(path)


def write_pair_lmdb(path, n=200, classes=10, seed=0):
    """An LMDB of digit-sized pairs (two 28x28 channels), label 1 for the same class, else 0."""
    g = np.random.default_rng(seed + 1)
    templates = class_templates(classes, (1, 28, 28))
    with LMDBWriter(str(path)) as db:
        for i in range(n):
            a = int(g.integers(classes))
            b = a if i % 2 else int((a + g.integers(1, classes)) % classes)
            pair = np.concatenate([noisy(templates[a], g), noisy(templates[b], g)])
            db.put(datum_key(i, f"pair{i}"), array_to_datum(pair, int(a == b)).SerializeToString())
    return str(path)


def write_sine_h5(folder, streams=8, length=400, seed=0):
    """An HDF5 file of sine waves for the LSTM: rows are time steps, columns streams; each
    stream restarts (cont = 0) every 100 steps with a new frequency and phase. Returns the path
    of the file list HDF5Data reads."""
    h5py = pytest.importorskip("h5py")
    g = np.random.default_rng(seed)
    t = np.arange(length + 1) % 100
    starts = np.arange(length + 1) // 100
    freq = g.uniform(0.15, 0.4, (starts[-1] + 1, streams))[starts]
    phase = g.uniform(0, 2 * np.pi, (starts[-1] + 1, streams))[starts]
    wave = 0.8 * np.sin(freq * t[:, None] + phase).astype(np.float32)
    cont = (t[:length, None] != 0).repeat(streams, axis=1).astype(np.float32)
    # Within a sequence the target is the next value; at a sequence's last step it is the value
    # the same oscillation would take next (not the next sequence's first value).
    nxt = 0.8 * np.sin(freq[:length] * (t[:length, None] + 1) + phase[:length])
    path = os.path.join(folder, "sine.h5")
    with h5py.File(path, "w") as f:
        f["data"] = wave[:length, :, None]
        f["cont"] = cont
        f["target"] = nxt[:, :, None].astype(np.float32)
    listing = os.path.join(folder, "sine_h5.txt")
    with open(listing, "w") as f:
        f.write(path + "\n")
    return listing


def train(model, net, iterations):
    """Train ``net`` (a NetParameter) with the model's own solver.prototxt for ``iterations``
    iterations, without tests or snapshots; return the loss of every iteration."""
    param = io.read_solver(model_file(model, "solver"))
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    param.ClearField("test_iter")
    param.test_interval = 0
    param.display = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    param.average_loss = 1
    param.random_seed = 1
    param.allow_tf32 = False   # exact float32 products: the emulator's run is compared to the CPU
    param.max_iter = iterations
    solver = get_solver(param)
    return np.array([solver.step(1) for _ in range(iterations)])


def assert_learns(losses, factor):
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert np.all(np.isfinite(losses))
    assert last < factor * first, f"loss {first:.4f} over the first 20 iterations, {last:.4f} " \
                                  f"over the last 20"


def check_forward_backward(net, backward=True):
    """One forward and (optionally) one backward on random inputs: finite outputs, finite
    gradients, and a non-zero gradient for every learned weight (a bias may get exactly zero:
    in the siamese net the two towers' contributions to a shared bias cancel)."""
    fill_random(net)
    outputs = net.forward()
    for name, value in outputs.items():
        assert np.all(np.isfinite(value)), f"output '{name}' is not finite"
    if not backward:
        return
    net.backward()
    for blob, lr in zip(net.learnable_params, net.params_lr):
        assert np.all(np.isfinite(blob.diff)), f"gradient of '{blob.name}' is not finite"
        if lr and blob.num_axes > 1:
            assert np.any(blob.diff != 0), f"no gradient reaches '{blob.name}'"


# -- every model builds and runs -----------------------------------------------------------------
def test_every_model_folder_is_complete():
    for model in sorted(ISSUE_MODELS):
        for kind in ("train_val", "deploy", "solver"):
            assert os.path.isfile(model_file(model, kind)), f"{model}/{kind}.prototxt"
        solver = io.read_solver(model_file(model, "solver"))
        assert solver.net == f"models/{model}/train_val.prototxt"
        deploy = io.read_net(model_file(model, "deploy"))
        assert deploy.layer[0].type == "Input", f"{model}/deploy.prototxt starts with an Input"


def test_every_prototxt_in_models_parses():
    """Nets and solvers alike, including variants beside train_val/deploy/solver."""
    for folder, _, names in os.walk(MODELS):
        for name in sorted(n for n in names if n.endswith(".prototxt")):
            path = os.path.join(folder, name)
            if "solver" in name:
                assert io.read_solver(path).net or io.read_solver(path).train_net, path
            else:
                assert len(io.read_net(path).layer) > 1, path


@pytest.mark.parametrize("model", models_with("train_val"))
def test_model_builds_and_runs(model):
    """train_val, TRAIN: forward + backward on random inputs. TEST, with the TRAIN net's weights
    as the solver shares them (BatchNorm's running averages included): forward (+ backward for
    the small nets). deploy, given the trained weights by layer name as a .caffemodel would:
    forward on the TEST net's inputs computes the same blobs (+ backward to the input for the
    small nets). Batch 1 for the ImageNet nets at their full input size, 2 for the others."""
    batch = 1 if model in BIG else 2
    param = with_input_layers(io.read_net(model_file(model, "train_val")),
                              data_shapes(model, batch))
    train_net = confnet.Net(param, confnet.TRAIN)
    check_forward_backward(train_net)
    test_net = confnet.Net(without_fillers(param), confnet.TEST)
    test_net.share_weights_from(train_net)
    check_forward_backward(test_net, backward=model not in BIG)
    if os.path.isfile(model_file(model, "deploy")):
        check_deploy(model, batch, train_net, test_net)


def check_deploy(model, batch, train_net, test_net):
    param = with_batch(io.read_net(model_file(model, "deploy")), batch)
    param.force_backward = model not in BIG
    net = confnet.Net(param, confnet.TEST)
    if model in PARAMETER_COUNTS:
        learned = sum(b.count for layer in net.layers if layer.type_name != "BatchNorm"
                      for b in layer.blobs)
        assert learned == PARAMETER_COUNTS[model]
    copy_weights(train_net, net)
    fill_random(net)
    for name in net.inputs:
        if name in test_net.blobs and test_net.blobs[name].shape == net.blobs[name].shape:
            net.blobs[name].data[...] = test_net.blobs[name].data
    outputs = net.forward()
    if "prob" in outputs:
        np.testing.assert_allclose(outputs["prob"].sum(axis=1), 1, rtol=1e-5)
    compared = 0
    for name, blob in net.blobs.items():
        theirs = test_net.blobs.get(name)
        if theirs is not None and theirs.shape == blob.shape and name not in net.inputs:
            np.testing.assert_allclose(blob.data, theirs.data, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{model}: blob '{name}', deploy vs TEST net")
            compared += 1
    assert compared or model == "lstm_sequence", f"{model}: deploy and TEST net share no blob"
    if param.force_backward:
        # Random output gradients (ones would give zero through a softmax, whose sum is 1).
        g = np.random.default_rng(1)
        grads = net.backward(**{name: g.standard_normal(value.shape)
                                for name, value in outputs.items()})
        data = grads[net.inputs[0]]
        assert np.all(np.isfinite(data)) and np.any(data != 0)


def copy_weights(source, target):
    """Parameters by layer name, as a .caffemodel is loaded; every parameter of ``target``
    must exist in ``source`` with the same shape."""
    for name, layer in zip(target.layer_names, target.layers):
        if not layer.blobs:
            continue
        assert name in source.layer_dict, f"deploy layer '{name}' is not in the train_val net"
        theirs = source.layer_dict[name].blobs
        assert [b.shape for b in theirs] == [b.shape for b in layer.blobs], name
        for mine, blob in zip(layer.blobs, theirs):
            mine.data[...] = blob.data


# -- training on generated data ------------------------------------------------------------------
def lmdb_sources(model, folder):
    """An LMDB for the model (pairs for the siamese net) and its mean image."""
    if model == "siamese":
        return write_pair_lmdb(os.path.join(folder, "pairs_lmdb")), None
    db = write_class_lmdb(os.path.join(folder, "train_lmdb"), IMAGES[model])
    mean = os.path.join(folder, "mean.binaryproto")
    save_mean(compute_mean(db), mean)
    return db, mean


# model: (batch size, iterations, last-20 loss below this fraction of the first-20 loss)
TRAINING = {"lenet": (8, 200, 0.2), "cifar10_quick": (4, 200, 0.5),
            "siamese": (4, 200, 0.5), "lstm_sequence": (20, 300, 0.2)}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(TRAINING))
def test_small_model_learns(model, tmp_path):
    """The model's own train_val and solver, reading a small generated LMDB (class patterns plus
    noise; pairs of them for the siamese net) or HDF5 file (sine waves for the LSTM)."""
    batch, iterations, factor = TRAINING[model]
    net = io.read_net(model_file(model, "train_val"))
    if model == "lstm_sequence":
        source, mean = write_sine_h5(str(tmp_path)), None
    else:
        source, mean = lmdb_sources(model, str(tmp_path))
    net = with_data_sources(net, {pb.TRAIN: source, pb.TEST: source}, batch, mean)
    assert_learns(train(model, net, iterations), factor)


# -- nets in Caffe's older formats, as the model zoo has them ------------------------------------
# CIFAR-10 quick as Caffe's examples wrote it in the V1 format (2014), with this repository's
# data paths: upper-case layer types, blobs_lr, `include: { phase: ... }`.
CIFAR10_QUICK_V1 = """\
name: "CIFAR10_quick"
layers {
  name: "cifar"
  type: DATA
  top: "data"
  top: "label"
  data_param {
    source: "data/cifar10_train_lmdb"
    batch_size: 100
    backend: LMDB
  }
  transform_param {
    mean_file: "data/cifar10_mean.binaryproto"
  }
  include: { phase: TRAIN }
}
layers {
  name: "cifar"
  type: DATA
  top: "data"
  top: "label"
  data_param {
    source: "data/cifar10_test_lmdb"
    batch_size: 100
    backend: LMDB
  }
  transform_param {
    mean_file: "data/cifar10_mean.binaryproto"
  }
  include: { phase: TEST }
}
layers {
  name: "conv1"
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  blobs_lr: 1
  blobs_lr: 2
  convolution_param {
    num_output: 32
    pad: 2
    kernel_size: 5
    stride: 1
    weight_filler {
      type: "gaussian"
      std: 0.0001
    }
    bias_filler {
      type: "constant"
    }
  }
}
layers {
  name: "pool1"
  type: POOLING
  bottom: "conv1"
  top: "pool1"
  pooling_param {
    pool: MAX
    kernel_size: 3
    stride: 2
  }
}
layers {
  name: "relu1"
  type: RELU
  bottom: "pool1"
  top: "pool1"
}
layers {
  name: "conv2"
  type: CONVOLUTION
  bottom: "pool1"
  top: "conv2"
  blobs_lr: 1
  blobs_lr: 2
  convolution_param {
    num_output: 32
    pad: 2
    kernel_size: 5
    stride: 1
    weight_filler {
      type: "gaussian"
      std: 0.01
    }
    bias_filler {
      type: "constant"
    }
  }
}
layers {
  name: "relu2"
  type: RELU
  bottom: "conv2"
  top: "conv2"
}
layers {
  name: "pool2"
  type: POOLING
  bottom: "conv2"
  top: "pool2"
  pooling_param {
    pool: AVE
    kernel_size: 3
    stride: 2
  }
}
layers {
  name: "conv3"
  type: CONVOLUTION
  bottom: "pool2"
  top: "conv3"
  blobs_lr: 1
  blobs_lr: 2
  convolution_param {
    num_output: 64
    pad: 2
    kernel_size: 5
    stride: 1
    weight_filler {
      type: "gaussian"
      std: 0.01
    }
    bias_filler {
      type: "constant"
    }
  }
}
layers {
  name: "relu3"
  type: RELU
  bottom: "conv3"
  top: "conv3"
}
layers {
  name: "pool3"
  type: POOLING
  bottom: "conv3"
  top: "pool3"
  pooling_param {
    pool: AVE
    kernel_size: 3
    stride: 2
  }
}
layers {
  name: "ip1"
  type: INNER_PRODUCT
  bottom: "pool3"
  top: "ip1"
  blobs_lr: 1
  blobs_lr: 2
  inner_product_param {
    num_output: 64
    weight_filler {
      type: "gaussian"
      std: 0.1
    }
    bias_filler {
      type: "constant"
    }
  }
}
layers {
  name: "ip2"
  type: INNER_PRODUCT
  bottom: "ip1"
  top: "ip2"
  blobs_lr: 1
  blobs_lr: 2
  inner_product_param {
    num_output: 10
    weight_filler {
      type: "gaussian"
      std: 0.1
    }
    bias_filler {
      type: "constant"
    }
  }
}
layers {
  name: "accuracy"
  type: ACCURACY
  bottom: "ip2"
  bottom: "label"
  top: "accuracy"
  include: { phase: TEST }
}
layers {
  name: "loss"
  type: SOFTMAX_LOSS
  bottom: "ip2"
  bottom: "label"
  top: "loss"
}
"""

# CaffeNet's deploy net as the model zoo shipped it before Input layers: the old net-level
# `input:` / `input_dim:` header and V1 layers.
CAFFENET_DEPLOY_V1 = """\
name: "CaffeNet"
input: "data"
input_dim: 10
input_dim: 3
input_dim: 227
input_dim: 227
layers {
  name: "conv1"
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  convolution_param {
    num_output: 96
    kernel_size: 11
    stride: 4
  }
}
layers {
  name: "relu1"
  type: RELU
  bottom: "conv1"
  top: "conv1"
}
layers {
  name: "pool1"
  type: POOLING
  bottom: "conv1"
  top: "pool1"
  pooling_param {
    pool: MAX
    kernel_size: 3
    stride: 2
  }
}
layers {
  name: "norm1"
  type: LRN
  bottom: "pool1"
  top: "norm1"
  lrn_param {
    local_size: 5
    alpha: 0.0001
    beta: 0.75
  }
}
layers {
  name: "conv2"
  type: CONVOLUTION
  bottom: "norm1"
  top: "conv2"
  convolution_param {
    num_output: 256
    pad: 2
    kernel_size: 5
    group: 2
  }
}
layers {
  name: "relu2"
  type: RELU
  bottom: "conv2"
  top: "conv2"
}
layers {
  name: "pool2"
  type: POOLING
  bottom: "conv2"
  top: "pool2"
  pooling_param {
    pool: MAX
    kernel_size: 3
    stride: 2
  }
}
layers {
  name: "norm2"
  type: LRN
  bottom: "pool2"
  top: "norm2"
  lrn_param {
    local_size: 5
    alpha: 0.0001
    beta: 0.75
  }
}
layers {
  name: "conv3"
  type: CONVOLUTION
  bottom: "norm2"
  top: "conv3"
  convolution_param {
    num_output: 384
    pad: 1
    kernel_size: 3
  }
}
layers {
  name: "relu3"
  type: RELU
  bottom: "conv3"
  top: "conv3"
}
layers {
  name: "conv4"
  type: CONVOLUTION
  bottom: "conv3"
  top: "conv4"
  convolution_param {
    num_output: 384
    pad: 1
    kernel_size: 3
    group: 2
  }
}
layers {
  name: "relu4"
  type: RELU
  bottom: "conv4"
  top: "conv4"
}
layers {
  name: "conv5"
  type: CONVOLUTION
  bottom: "conv4"
  top: "conv5"
  convolution_param {
    num_output: 256
    pad: 1
    kernel_size: 3
    group: 2
  }
}
layers {
  name: "relu5"
  type: RELU
  bottom: "conv5"
  top: "conv5"
}
layers {
  name: "pool5"
  type: POOLING
  bottom: "conv5"
  top: "pool5"
  pooling_param {
    pool: MAX
    kernel_size: 3
    stride: 2
  }
}
layers {
  name: "fc6"
  type: INNER_PRODUCT
  bottom: "pool5"
  top: "fc6"
  inner_product_param {
    num_output: 4096
  }
}
layers {
  name: "relu6"
  type: RELU
  bottom: "fc6"
  top: "fc6"
}
layers {
  name: "drop6"
  type: DROPOUT
  bottom: "fc6"
  top: "fc6"
  dropout_param {
    dropout_ratio: 0.5
  }
}
layers {
  name: "fc7"
  type: INNER_PRODUCT
  bottom: "fc6"
  top: "fc7"
  inner_product_param {
    num_output: 4096
  }
}
layers {
  name: "relu7"
  type: RELU
  bottom: "fc7"
  top: "fc7"
}
layers {
  name: "drop7"
  type: DROPOUT
  bottom: "fc7"
  top: "fc7"
  dropout_param {
    dropout_ratio: 0.5
  }
}
layers {
  name: "fc8"
  type: INNER_PRODUCT
  bottom: "fc7"
  top: "fc8"
  inner_product_param {
    num_output: 1000
  }
}
layers {
  name: "prob"
  type: SOFTMAX
  bottom: "fc8"
  top: "prob"
}
"""

# LeNet in the V0 format of Caffe's first release: layer fields inside `layers { layer { } }`,
# lower-case types, `kernelsize`, and the net-level input header.
LENET_V0 = """\
name: "LeNet"
input: "data"
input_dim: 64
input_dim: 1
input_dim: 28
input_dim: 28
layers {
  layer {
    name: "conv1"
    type: "conv"
    num_output: 20
    kernelsize: 5
    stride: 1
    weight_filler {
      type: "xavier"
    }
    bias_filler {
      type: "constant"
    }
    blobs_lr: 1.
    blobs_lr: 2.
  }
  bottom: "data"
  top: "conv1"
}
layers {
  layer {
    name: "pool1"
    type: "pool"
    kernelsize: 2
    stride: 2
    pool: MAX
  }
  bottom: "conv1"
  top: "pool1"
}
layers {
  layer {
    name: "conv2"
    type: "conv"
    num_output: 50
    kernelsize: 5
    stride: 1
    weight_filler {
      type: "xavier"
    }
    bias_filler {
      type: "constant"
    }
    blobs_lr: 1.
    blobs_lr: 2.
  }
  bottom: "pool1"
  top: "conv2"
}
layers {
  layer {
    name: "pool2"
    type: "pool"
    kernelsize: 2
    stride: 2
    pool: MAX
  }
  bottom: "conv2"
  top: "pool2"
}
layers {
  layer {
    name: "ip1"
    type: "innerproduct"
    num_output: 500
    weight_filler {
      type: "xavier"
    }
    bias_filler {
      type: "constant"
    }
    blobs_lr: 1.
    blobs_lr: 2.
  }
  bottom: "pool2"
  top: "ip1"
}
layers {
  layer {
    name: "relu1"
    type: "relu"
  }
  bottom: "ip1"
  top: "ip1"
}
layers {
  layer {
    name: "ip2"
    type: "innerproduct"
    num_output: 10
    weight_filler {
      type: "xavier"
    }
    bias_filler {
      type: "constant"
    }
    blobs_lr: 1.
    blobs_lr: 2.
  }
  bottom: "ip1"
  top: "ip2"
}
layers {
  layer {
    name: "prob"
    type: "softmax"
  }
  bottom: "ip2"
  top: "prob"
}
"""


def read_text_net(tmp_path, text, name="net.prototxt"):
    """Read ``text`` as a prototxt file, the way every net is read (upgraded on load)."""
    path = tmp_path / name
    path.write_text(text)
    return io.read_net(str(path))


def test_v1_cifar10_quick_upgrades_to_the_model_file(tmp_path):
    upgraded = read_text_net(tmp_path, CIFAR10_QUICK_V1)
    assert not upgraded.layers
    assert list(upgraded.layer) == list(io.read_net(model_file("cifar10_quick", "train_val")).layer)
    net = confnet.Net(with_input_layers(upgraded, data_shapes("cifar10_quick", 2)), confnet.TRAIN)
    assert [b.shape for b in net.params["conv1"]] == [(32, 3, 5, 5), (32,)]
    assert net.params_lr[:2] == [1, 2]
    check_forward_backward(net)


def test_v1_caffenet_deploy_with_input_dim_header_builds(tmp_path):
    upgraded = read_text_net(tmp_path, CAFFENET_DEPLOY_V1)
    ours = io.read_net(model_file("caffenet", "deploy"))
    assert upgraded.layer[0].type == "Input" and list(upgraded.layer[0].top) == ["data"]
    assert upgraded.layer[0].input_param == ours.layer[0].input_param
    assert list(upgraded.layer)[1:] == list(ours.layer)[1:]
    net = confnet.Net(with_batch(upgraded, 1), confnet.TEST)
    assert net.blobs["pool5"].shape == (1, 256, 6, 6)
    assert [b.shape for b in net.params["conv2"]] == [(256, 48, 5, 5), (256,)]
    fill_random(net)
    np.testing.assert_allclose(net.forward()["prob"].sum(), 1, rtol=1e-5)


def test_v0_lenet_builds_like_the_lenet_deploy(tmp_path):
    old = confnet.Net(read_text_net(tmp_path, LENET_V0), confnet.TEST)
    ours = confnet.Net(with_batch(io.read_net(model_file("lenet", "deploy")), 64), confnet.TEST)
    assert old.blobs["prob"].shape == (64, 10)
    assert {n: [b.shape for b in bs] for n, bs in old.params.items()} == \
        {n: [b.shape for b in bs] for n, bs in ours.params.items()}
    assert old.params_lr == [1, 2] * 4
    fill_random(old)
    assert np.all(np.isfinite(old.forward()["prob"]))


def input_header(shape, style):
    """The net-level input declaration of pre-Input-layer deploy files."""
    dims = "".join(f"input_dim: {d}\n" for d in shape) if style == "input_dim" else \
        "input_shape {\n" + "".join(f"  dim: {d}\n" for d in shape) + "}\n"
    return f'input: "data"\n{dims}'


@pytest.mark.parametrize("style", ["input_dim", "input_shape"])
@pytest.mark.parametrize("model", sorted(m for m in ISSUE_MODELS
                                         if m not in ("siamese", "lstm_sequence")))
def test_deploy_with_old_input_header_parses_the_same(model, style, tmp_path):
    """Zoo deploy files declare the image input in the net header (`input_dim:` as in CaffeNet's
    and ResNet-50's, `input_shape` as in GoogLeNet's); they upgrade to this repository's nets."""
    ours = io.read_net(model_file(model, "deploy"))
    first = ours.layer[0]
    assert first.type == "Input" and list(first.top) == ["data"]
    rest = pb.NetParameter(name=ours.name, layer=list(ours.layer)[1:])
    text = f'name: "{ours.name}"\n' + input_header(first.input_param.shape[0].dim, style) + \
        str(rest).split("\n", 1)[1]
    upgraded = read_text_net(tmp_path, text)
    assert upgraded.layer[0].input_param == first.input_param
    assert list(upgraded.layer)[1:] == list(ours.layer)[1:]


def test_lstm_deploy_steps_through_a_sequence_as_the_training_net():
    """deploy.prototxt runs one time step per forward and carries the LSTM state between
    forwards: stepping it through a sequence gives what the TEST net computes for all steps."""
    param = with_input_layers(io.read_net(model_file("lstm_sequence", "train_val")),
                              data_shapes("lstm_sequence", 2))
    train_net = confnet.Net(param, confnet.TRAIN)
    test_net = confnet.Net(without_fillers(param), confnet.TEST)
    test_net.share_weights_from(train_net)
    fill_random(test_net)
    test_net.forward()
    deploy = confnet.Net(io.read_net(model_file("lstm_sequence", "deploy")), confnet.TEST)
    copy_weights(train_net, deploy)
    x, cont = test_net.blobs["data"].data, test_net.blobs["cont"].data
    for t in range(x.shape[0]):
        out = deploy.forward(data=x[t:t + 1, :1], cont=cont[t:t + 1, :1])["ip1"]
        np.testing.assert_allclose(out[0, 0], test_net.blobs["ip1"].data[t, 0], rtol=1e-4,
                                   atol=1e-6)


V1_SHARED_WEIGHTS = """\
name: "shared"
input: "a"
input_dim: 2
input_dim: 3
input_dim: 1
input_dim: 1
input: "b"
input_dim: 2
input_dim: 3
input_dim: 1
input_dim: 1
layers {
  name: "ip_a"
  type: INNER_PRODUCT
  bottom: "a"
  top: "ip_a"
  param: "w"
  param: "bias"
  inner_product_param {
    num_output: 4
    weight_filler {
      type: "gaussian"
      std: 1
    }
  }
}
layers {
  name: "ip_b"
  type: INNER_PRODUCT
  bottom: "b"
  top: "ip_b"
  param: "w"
  param: "bias"
  inner_product_param {
    num_output: 4
  }
}
"""


def test_v1_param_names_share_weights(tmp_path):
    """The V1 siamese nets share weights with `param: "name"`, upgraded to ParamSpec names."""
    net = confnet.Net(read_text_net(tmp_path, V1_SHARED_WEIGHTS), confnet.TEST)
    assert net.params["ip_a"][0] is net.params["ip_b"][0]
    assert len(net.learnable_params) == 2
    x = np.random.default_rng(0).standard_normal((2, 3, 1, 1))
    out = net.forward(a=x, b=x)
    np.testing.assert_array_equal(out["ip_a"], out["ip_b"])
