"""Export a deploy net (its TEST phase, with its weights) as an ONNX model.

Each confnet layer becomes one ONNX node named after it (or a few nodes named ``<layer>/<step>``
where ONNX needs several), weights become initializers named ``<layer>/<param index>``, and the
Input layers' tops become the graph inputs. Blob names are the ONNX value names; a blob written
in place by several layers (``conv1`` by Convolution then ReLU) is an SSA chain in ONNX, so the
earlier versions are named ``<blob>/<layer that wrote it>`` and the last one keeps the blob's
name. With a dynamic batch, axis 0 of every input and output is the symbolic ``N``.

Caffe's arithmetic is kept exactly where ONNX's operator differs:

- Pooling rounds the output size up (``ceil``) and drops a last window that would start in the
  padding; the export computes Caffe's output size and pads the end of each axis explicitly
  (``pad_after``), then pools with ONNX's floor rounding, which gives the same windows. MAX never
  picks padding in either. AVE divides by Caffe's pool_size (padding counts, overhang past the
  padding does not): count_include_pad=0 when that is the number of cells inside the input,
  count_include_pad=1 when it is the full kernel, otherwise a constant per-position factor.
- InnerProduct with ``axis`` keeps the axes before it: x (..., K) @ W^T (K, N).
- LRN WITHIN_CHANNEL is Caffe's own composition: x * (1 + alpha / n^2 * window sum of x^2)^-beta.
- BatchNorm divides the stored mean and variance by the stored scale factor, as Caffe does.

A layer with no ONNX counterpart (losses, data readers, recurrent layers whose ``cont`` input
restarts sequences) is an error naming the layer and the exportable types.
"""

import math
import os

import numpy as np

from .errors import ConfnetError
from .layers import TEST

MIN_OPSET = 13       # Softmax over one axis and Split with a sizes input start here
DEFAULT_OPSET = 17
BATCH = "N"          # the symbolic batch dimension of a dynamic-batch export
# ONNX models are protobufs, limited to 2 GiB; larger weights go to a file beside the model.
_EXTERNAL_DATA_BYTES = 1 << 30


def import_onnx(what="confnet export"):
    try:
        import onnx
    except ImportError:
        raise ConfnetError(f"{what} needs the onnx package: pip install 'confnet[onnx]'") from None
    return onnx


def export(net, path=None, opset=DEFAULT_OPSET, batch="dynamic", outputs=None):
    """The ONNX ModelProto of ``net`` (a confnet Net, TEST phase, weights loaded), checked with
    onnx.checker; written to ``path`` when given.

    ``batch``: "dynamic" (axis 0 of inputs and outputs is symbolic) or an int (the net is
    reshaped to that batch first). ``outputs``: blob names to expose as graph outputs (default:
    the net's outputs); any blob of the net may be named.
    """
    onnx = import_onnx()
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ConfnetError(f"--opset {opset}: confnet exports opsets {MIN_OPSET} to "
                           f"{onnx.defs.onnx_opset_version()} (this onnx package's newest)")
    if net.phase != TEST:
        raise ConfnetError(f"net '{net.name}': export the TEST phase (a deploy net)")
    if not net.inputs:
        raise ConfnetError(f"net '{net.name}': no Input layer; export needs a deploy net whose "
                           "inputs are Input layers")
    dynamic = batch == "dynamic"
    if not dynamic:
        _set_batch(net, int(batch))
    model = _Graph(net, opset, dynamic).build(outputs or net.outputs)
    if sum(t.ByteSize() for t in model.graph.initializer) <= _EXTERNAL_DATA_BYTES:
        onnx.checker.check_model(model, full_check=True)   # before anything is written
        if path is not None:
            onnx.save_model(model, path)
        return model
    if path is None:
        raise ConfnetError(f"net '{net.name}': over 1 GiB of weights; give a file to write the "
                           "model to (its weights go to a .data file beside it)")
    data = path + ".data"
    if os.path.exists(data):
        os.remove(data)     # onnx appends to an existing weights file
    onnx.save_model(model, path, save_as_external_data=True, location=os.path.basename(data))
    onnx.checker.check_model(path)     # by path: the model is past the protobuf limit
    return model


def _set_batch(net, batch):
    if batch < 1:
        raise ConfnetError(f"--batch {batch}: give a positive batch size or 'dynamic'")
    for name in net.inputs:
        blob = net.blobs[name]
        blob.reshape((batch,) + tuple(blob.shape[1:]))
    net.reshape()


class _Graph:
    """The ONNX graph of a net under construction: nodes, initializers and the ONNX value name
    that currently holds each blob."""

    def __init__(self, net, opset, dynamic):
        from onnx import ModelProto, helper
        self.helper = helper
        self.net, self.opset, self.dynamic = net, opset, dynamic
        # The weights go straight into the model's graph: a protobuf copies what it is given.
        opsets = [helper.make_opsetid("", opset)]
        self.model = ModelProto(producer_name="confnet", opset_import=opsets,
                                ir_version=helper.find_min_ir_version_for(opsets))
        self.graph, self.nodes = self.model.graph, []
        self.graph.name = net.name or "confnet"
        self.value = {}                       # blob name -> ONNX value holding it now
        self.taken = set(net.blobs)           # every name in use, so new names stay unique

    # -- building blocks -------------------------------------------------------------------------
    def unique(self, name):
        candidate, k = name, 1
        while candidate in self.taken:
            candidate, k = f"{name}_{k}", k + 1
        self.taken.add(candidate)
        return candidate

    def const(self, name, array, dtype=np.float32):
        array = np.asarray(array, dtype)
        # Little-endian raw bytes, as ONNX stores them.
        tensor = self.graph.initializer.add(
            name=self.unique(name), dims=array.shape,
            data_type=self.helper.np_dtype_to_tensor_dtype(array.dtype))
        tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        return tensor.name

    def ints(self, name, values):
        return self.const(name, np.asarray(values, np.int64), np.int64)

    def node(self, op, inputs, outputs=None, name=None, **attrs):
        """Append a node; returns its output value names (one new temporary if none given)."""
        outputs = outputs or [self.unique(f"{name}/{op}")]
        self.nodes.append(self.helper.make_node(op, list(inputs), list(outputs), name=name,
                                                **attrs))
        return outputs

    def shape_of(self, shape):
        """A Reshape target for a blob shape: axis 0 left to -1 when the batch is dynamic."""
        shape = list(shape)
        if self.dynamic and shape:
            shape[0] = -1
        return shape

    def reshape(self, x, shape, name, out=None):
        target = self.ints(f"{name}/shape", self.shape_of(shape))
        return self.node("Reshape", [x, target], out and [out], name)[0]

    # -- the graph -------------------------------------------------------------------------------
    def build(self, outputs):
        net = self.net
        missing = [name for name in outputs if name not in net.blobs]
        if missing:
            raise ConfnetError(f"net '{net.name}' has no blob {', '.join(missing)}; its blobs: "
                               f"{', '.join(net.blobs)}")
        last_writer = {top: i for i, tops in enumerate(net.top_ids) for top in tops}
        inputs = []
        for i, (layer, bottoms, tops) in enumerate(zip(net.layers, net.bottom_ids, net.top_ids)):
            if layer.type_name == "Input":
                for top in tops:
                    self.value[top] = top
                    inputs.append(self.tensor_info(top))
                continue
            convert = CONVERTERS.get(layer.type_name)
            if convert is None:
                layer.fail("has no ONNX export; exportable types: "
                           f"{', '.join(['Input', *sorted(CONVERTERS)])}")
            x = [self.value[b] for b in bottoms]
            y = [top if last_writer[top] == i else self.unique(f"{top}/{layer.name}")
                 for top in tops]
            convert(self, layer, x, y, [net.blobs[b] for b in bottoms],
                    [net.blobs[t] for t in tops])
            self.value.update(zip(tops, y))
        # The last writer of every blob gives its value the blob's name.
        self.graph.output.extend(self.tensor_info(name) for name in outputs)
        self.graph.node.extend(self.nodes)
        self.graph.input.extend(inputs)
        return self.model

    def tensor_info(self, name, shape=None):
        from onnx import TensorProto
        shape = list(self.net.blobs[name].shape if shape is None else shape)
        if self.dynamic and shape:
            shape[0] = BATCH
        return self.helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# -- converters: (graph, layer, input values, output values, bottom blobs, top blobs) -------------
CONVERTERS = {}


def converts(*type_names):
    def register(function):
        for type_name in type_names:
            CONVERTERS[type_name] = function
        return function
    return register


def _params(g, layer):
    return [g.const(f"{layer.name}/{j}", blob.data) for j, blob in enumerate(layer.blobs)]


@converts("Convolution", "Deconvolution")
def _convolution(g, layer, x, y, bottom, top):
    op = "Conv" if layer.type_name == "Convolution" else "ConvTranspose"
    weights = _params(g, layer)
    for i, (xi, yi) in enumerate(zip(x, y)):
        g.node(op, [xi] + weights, [yi], layer.name if i == 0 else f"{layer.name}/{i}",
               kernel_shape=list(layer.kernel), strides=list(layer.stride),
               pads=list(layer.pad) * 2, dilations=list(layer.dilation), group=layer.group)


@converts("InnerProduct")
def _inner_product(g, layer, x, y, bottom, top):
    if layer.axis == 1:
        # Gemm's B is (N, K) with transB, Caffe's layout; (K, N) with transpose: true.
        flat = g.node("Flatten", x, name=f"{layer.name}/flatten", axis=1)
        g.node("Gemm", flat + _params(g, layer), y, layer.name, transB=int(not layer.transpose))
        return
    w = layer.blobs[0].data
    w = w if layer.transpose else w.T        # (K, N)
    rows = g.ints(f"{layer.name}/shape", [0] * layer.axis + [-1])   # 0 keeps that axis
    matrix = g.node("Reshape", [x[0], rows], name=f"{layer.name}/reshape")
    weight = g.const(f"{layer.name}/0", w)
    if not layer.bias_term:
        g.node("MatMul", matrix + [weight], y, layer.name)
        return
    product = g.node("MatMul", matrix + [weight], name=layer.name)
    g.node("Add", product + [_params(g, layer)[1]], y, f"{layer.name}/bias")


@converts("Pooling")
def _pooling(g, layer, x, y, bottom, top):
    from .layers.pooling import AVE, MAX
    if len(top) > 1:
        layer.fail("has a second top (the argmax mask), which ONNX's MaxPool does not give")
    attrs = {"kernel_shape": list(layer.kernel), "strides": list(layer.stride),
             "pads": list(layer.pad) + list(layer.pad_after)}
    if layer.method == MAX:
        g.node("MaxPool", x, y, layer.name, **attrs)
        return
    assert layer.method == AVE
    average_pool(g, layer.name, x[0], y[0], bottom[0].shape[2:], attrs, layer.pool_size)


def average_pool(g, name, x, y, spatial, attrs, pool_size):
    """AveragePool whose divisor is Caffe's ``pool_size`` (an (out_h, out_w) array)."""
    kernel, strides, pads = attrs["kernel_shape"], attrs["strides"], attrs["pads"]
    inside = np.ones((), np.float64)
    for axis, (size, k, s) in enumerate(zip(spatial, kernel, strides)):
        start = np.arange(pool_size.shape[axis]) * s - pads[axis]
        inside = np.multiply.outer(inside, np.minimum(start + k, size) - np.maximum(start, 0))
    if np.array_equal(pool_size, inside):
        g.node("AveragePool", [x], [y], name, count_include_pad=0, **attrs)
    elif np.all(pool_size == math.prod(kernel)):
        g.node("AveragePool", [x], [y], name, count_include_pad=1, **attrs)
    else:
        # The mean over the whole kernel (padding as zeros), times kernel size / Caffe's size.
        mean = g.node("AveragePool", [x], name=name, count_include_pad=1, **attrs)
        factor = g.const(f"{name}/divisor", math.prod(kernel) / pool_size)
        g.node("Mul", mean + [factor], [y], f"{name}/divisor")


@converts("LRN")
def _lrn(g, layer, x, y, bottom, top):
    from .layers.lrn import ACROSS_CHANNELS
    if layer.region == ACROSS_CHANNELS:
        g.node("LRN", x, y, layer.name, size=layer.size, alpha=layer.alpha, beta=layer.beta,
               bias=layer.k)
        return
    # WITHIN_CHANNEL, as Caffe builds it: x * (1 + alpha * mean of x^2 over size x size)^-beta,
    # the mean over the zero-padded window (pool_size = size^2 everywhere).
    n, half = layer.size, (layer.size - 1) // 2
    square = g.node("Mul", [x[0], x[0]], name=f"{layer.name}/square")
    spatial = bottom[0].shape[2:]
    mean = g.unique(f"{layer.name}/pool")
    average_pool(g, f"{layer.name}/pool", square[0], mean, spatial,
                 {"kernel_shape": [n, n], "strides": [1, 1], "pads": [half] * 4},
                 np.full(spatial, n * n, np.float64))
    scaled = g.node("Mul", [mean, g.const(f"{layer.name}/alpha", layer.alpha)],
                    name=f"{layer.name}/alpha")
    shifted = g.node("Add", scaled + [g.const(f"{layer.name}/one", 1.0)],
                     name=f"{layer.name}/shift")
    power = g.node("Pow", shifted + [g.const(f"{layer.name}/beta", -layer.beta)],
                   name=f"{layer.name}/power")
    g.node("Mul", [x[0]] + power, y, layer.name)


@converts("BatchNorm")
def _batch_norm(g, layer, x, y, bottom, top):
    if not layer.use_global_stats:
        layer.fail("normalises with the batch's own statistics (use_global_stats: false); "
                   "export a net that uses the stored ones")
    mean, var, factor = (b.data for b in layer.blobs)
    factor = 0.0 if factor[0] == 0 else 1.0 / factor[0]
    channels = mean.shape[0]
    g.node("BatchNormalization",
           [x[0], g.const(f"{layer.name}/scale", np.ones(channels)),
            g.const(f"{layer.name}/bias", np.zeros(channels)),
            g.const(f"{layer.name}/mean", mean * factor),
            g.const(f"{layer.name}/var", var * factor)], y, layer.name, epsilon=layer.eps)


def _lined_up(blob_shape, x_blob, axis):
    """``blob_shape`` with trailing 1s, so that numpy broadcasting lines it up with x's axes
    from ``axis`` (Caffe's Scale/Bias operands)."""
    if not blob_shape:
        return [], 0
    axis = x_blob.canonical_axis(axis)
    return list(blob_shape) + [1] * (x_blob.num_axes - axis - len(blob_shape)), axis


def _operand(g, layer, x, bottom, axis, index):
    """The Scale/Bias operand: the second bottom reshaped, or the learned blob ``index``."""
    if len(bottom) == 2:
        shape, axis = _lined_up(bottom[1].shape, bottom[0], axis)
        if len(shape) == bottom[1].num_axes:
            return x[1]
        target = g.shape_of(shape) if axis == 0 else shape
        return g.node("Reshape", [x[1], g.ints(f"{layer.name}/shape", target)],
                      name=f"{layer.name}/operand")[0]
    blob = layer.blobs[index]
    shape, _ = _lined_up(blob.shape, bottom[0], axis)
    return g.const(f"{layer.name}/{index}", blob.data.reshape(shape))


@converts("Scale")
def _scale(g, layer, x, y, bottom, top):
    p = layer.param.scale_param
    s = _operand(g, layer, x, bottom, p.axis, 0)
    if not p.bias_term:
        g.node("Mul", [x[0], s], y, layer.name)
        return
    product = g.node("Mul", [x[0], s], name=layer.name)
    bias = layer.blobs[-1]
    shape, _ = _lined_up(bias.shape, bottom[0], p.axis)
    g.node("Add", product + [g.const(f"{layer.name}/{len(layer.blobs) - 1}",
                                     bias.data.reshape(shape))], y, f"{layer.name}/bias")


@converts("Bias")
def _bias(g, layer, x, y, bottom, top):
    g.node("Add", [x[0], _operand(g, layer, x, bottom, layer.param.bias_param.axis, 0)], y,
           layer.name)


@converts("Eltwise")
def _eltwise(g, layer, x, y, bottom, top):
    from .layers.eltwise import MAX, PROD
    if layer.op == PROD:
        product = x[0]
        for i, xi in enumerate(x[1:-1]):
            product = g.node("Mul", [product, xi], name=f"{layer.name}/{i}")[0]
        g.node("Mul", [product, x[-1]], y, layer.name)
    elif layer.op == MAX:
        g.node("Max", x, y, layer.name)
    elif all(c == 1 for c in layer.coeffs):
        g.node("Sum", x, y, layer.name)
    else:
        terms = [xi if c == 1 else g.node("Mul", [xi, g.const(f"{layer.name}/coeff{i}", c)],
                                          name=f"{layer.name}/coeff{i}")[0]
                 for i, (xi, c) in enumerate(zip(x, layer.coeffs))]
        g.node("Sum", terms, y, layer.name)


@converts("Concat")
def _concat(g, layer, x, y, bottom, top):
    g.node("Concat", x, y, layer.name, axis=layer.axis)


@converts("Slice")
def _slice(g, layer, x, y, bottom, top):
    sizes = [t.shape[layer.axis] for t in top]
    g.node("Split", [x[0], g.ints(f"{layer.name}/sizes", sizes)], y, layer.name,
           axis=layer.axis)


@converts("Split")
def _split(g, layer, x, y, bottom, top):
    for i, yi in enumerate(y):
        g.node("Identity", x, [yi], f"{layer.name}/{i}")


@converts("Crop")
def _crop(g, layer, x, y, bottom, top):
    cropped = [(axis, index) for axis, index in enumerate(layer.index)
               if index != slice(None)]
    g.node("Slice", [x[0], g.ints(f"{layer.name}/starts", [s.start for _, s in cropped]),
                     g.ints(f"{layer.name}/ends", [s.stop for _, s in cropped]),
                     g.ints(f"{layer.name}/axes", [a for a, _ in cropped])], y, layer.name)


@converts("Flatten", "Reshape")
def _reshape(g, layer, x, y, bottom, top):
    fp = layer.param.flatten_param
    if (layer.type_name == "Flatten" and bottom[0].canonical_axis(fp.axis) == 1
            and bottom[0].canonical_axis(fp.end_axis) == bottom[0].num_axes - 1):
        g.node("Flatten", x, y, layer.name, axis=1)
    else:
        g.reshape(x[0], top[0].shape, layer.name, y[0])


@converts("Softmax")
def _softmax(g, layer, x, y, bottom, top):
    g.node("Softmax", x, y, layer.name, axis=layer.axis)


@converts("Dropout")
def _identity(g, layer, x, y, bottom, top):
    g.node("Identity", x, y, layer.name)


@converts("ReLU")
def _relu(g, layer, x, y, bottom, top):
    if layer.slope:
        g.node("LeakyRelu", x, y, layer.name, alpha=layer.slope)
    else:
        g.node("Relu", x, y, layer.name)


@converts("PReLU")
def _prelu(g, layer, x, y, bottom, top):
    slope = layer.blobs[0].data
    shape = [1] if layer.shared else [slope.size] + [1] * (bottom[0].num_axes - 2)
    g.node("PRelu", [x[0], g.const(f"{layer.name}/0", slope.reshape(shape))], y, layer.name)


@converts("ELU")
def _elu(g, layer, x, y, bottom, top):
    g.node("Elu", x, y, layer.name, alpha=layer.alpha)


_UNARY = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus"}


@converts(*_UNARY)
def _unary(g, layer, x, y, bottom, top):
    g.node(_UNARY[layer.type_name], x, y, layer.name)


def _affine(g, layer, x, scale, shift):
    """shift + scale * x, leaving out the steps that change nothing."""
    if scale != 1:
        x = g.node("Mul", [x, g.const(f"{layer.name}/scale", scale)],
                   name=f"{layer.name}/scale")[0]
    if shift != 0:
        x = g.node("Add", [x, g.const(f"{layer.name}/shift", shift)],
                   name=f"{layer.name}/shift")[0]
    return x


@converts("Power")
def _power(g, layer, x, y, bottom, top):
    inner = _affine(g, layer, x[0], layer.scale, layer.shift)
    g.node("Pow", [inner, g.const(f"{layer.name}/power", layer.power)], y, layer.name)


@converts("Exp")
def _exp(g, layer, x, y, bottom, top):
    # base^(shift + scale x) = exp(ln(base) scale x) * base^shift
    exp = g.node("Exp", [_affine(g, layer, x[0], layer.inner_scale, 0)], name=layer.name)
    g.node("Mul", exp + [g.const(f"{layer.name}/outer", layer.outer_scale)], y,
           f"{layer.name}/outer")


@converts("Log")
def _log(g, layer, x, y, bottom, top):
    log = g.node("Log", [_affine(g, layer, x[0], layer.scale, layer.shift)], name=layer.name)
    g.node("Mul", log + [g.const(f"{layer.name}/base", layer.base_scale)], y,
           f"{layer.name}/base")


@converts("Threshold")
def _threshold(g, layer, x, y, bottom, top):
    from onnx import TensorProto
    above = g.node("Greater", [x[0], g.const(f"{layer.name}/threshold", layer.threshold)],
                   name=layer.name)
    g.node("Cast", above, y, f"{layer.name}/cast", to=TensorProto.FLOAT)


@converts("Clip")
def _clip(g, layer, x, y, bottom, top):
    g.node("Clip", [x[0], g.const(f"{layer.name}/min", layer.low),
                    g.const(f"{layer.name}/max", layer.high)], y, layer.name)


@converts("Swish")
def _swish(g, layer, x, y, bottom, top):
    gate = g.node("Sigmoid", [_affine(g, layer, x[0], layer.beta, 0)], name=layer.name)
    g.node("Mul", [x[0]] + gate, y, f"{layer.name}/gate")


@converts("Tile")
def _tile(g, layer, x, y, bottom, top):
    repeats = [1] * bottom[0].num_axes
    repeats[layer.axis] = layer.tiles
    g.node("Tile", [x[0], g.ints(f"{layer.name}/repeats", repeats)], y, layer.name)
