"""Read and write Caffe's protobuf files; upgrade old net and solver formats on load.

Text files (prototxt) and binary files (caffemodel, binaryproto, solverstate) use the
messages of confnet.proto, which are Caffe's. Nets written in the V0 or V1 layer format,
with deprecated data-transformation fields or with net-level inputs, are upgraded the way
Caffe's upgrade_proto.cpp does it, so the rest of confnet only ever sees `layer` (V2) nets.
Every mistake in the input becomes a one-line ConfnetError that names the file.
"""

import math
import os
import re

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError, EncodeError

from confnet.atomic import atomic_path
from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb
from confnet.proto import kinds

# ---------------------------------------------------------------------------
# Text and binary files


def parse_text(text, message_cls, filename="<string>"):
    """Parse protobuf text format into a new `message_cls`.

    A syntax error or unknown field raises ConfnetError "FILE:LINE:COL: what is wrong".
    """
    message = message_cls()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfnetError(_describe_parse_error(error, filename)) from None
    return message


def _describe_parse_error(error, filename):
    """'FILE:LINE:COL: reason' from a text_format.ParseError."""
    line, column = error.GetLine(), error.GetColumn()
    reason = str(error).removeprefix(f"{line}:{column} : ")
    if line is None:
        return f"{filename}: {reason}"
    return f"{filename}:{line}:{column}: {reason}"


def read_text(path, message_cls):
    """Read a text-format file (e.g. a prototxt) into a new `message_cls`."""
    data = _read_bytes(path)
    wanted = _TEXT_KIND[message_cls]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        kinds.expect(path, data, False, wanted)
        raise ConfnetError(f"{path}: not a UTF-8 text file (byte {error.start})") from None
    return _parse_text_file(path, data, text, message_cls)


def _parse_text_file(path, data, text, message_cls):
    """parse_text, naming the kind of file it is when it is another kind than expected."""
    try:
        return parse_text(text, message_cls, filename=str(path))
    except ConfnetError:
        kinds.expect(path, data, True, _TEXT_KIND[message_cls])
        raise


def write_text(message, path):
    """Write `message` in text format, atomically."""
    _write_atomic(path, text_format.MessageToString(message).encode("utf-8"))


def read_binary(path, message_cls):
    """Read a binary protobuf file (caffemodel, binaryproto, ...) into a `message_cls`."""
    return _parse_binary(_read_bytes(path), message_cls, path)


def write_binary(message, path):
    """Serialize `message` to `path` atomically (temp file in the same folder, then rename)."""
    try:
        data = message.SerializeToString()
    except EncodeError as error:
        raise ConfnetError(f"{path}: cannot write: {error}") from None
    _write_atomic(path, data)


def _parse_binary(data, message_cls, path):
    """Parse binary protobuf; a file of another kind (a .caffemodel read as a .solverstate, a
    prototxt as a .binaryproto) is named for what it is instead of failing or parsing to junk."""
    message = message_cls()
    wanted = _BINARY_KIND.get(message_cls)
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        if wanted:
            kinds.expect(path, data, _looks_like_text(data), wanted)
        raise ConfnetError(
            f"{path}: not a valid binary {message_cls.DESCRIPTOR.name} file ({error})") from None
    if wanted and not kinds.looks_like(message, wanted):
        kinds.expect(path, data, _looks_like_text(data), wanted)
    return message


_TEXT_KIND = {pb.NetParameter: kinds.NET_TEXT, pb.SolverParameter: kinds.SOLVER_TEXT}
_BINARY_KIND = {pb.NetParameter: kinds.WEIGHTS, pb.SolverState: kinds.SOLVER_STATE,
                pb.BlobProto: kinds.BLOB}


def _read_bytes(path):
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except FileNotFoundError:
        raise ConfnetError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfnetError(f"{path}: cannot read: {error.strerror}") from None


def _write_atomic(path, data):
    """Write bytes to a temp file beside `path`, then rename it over `path`."""
    with atomic_path(path) as temp, open(temp, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1f]")


def _looks_like_text(data):
    """True if the bytes are UTF-8 without the control bytes binary protobuf is full of."""
    if _BINARY_BYTES.search(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------------------
# Nets


def read_net(path, weights=False):
    """Read a NetParameter from a prototxt or a binary caffemodel, upgraded to V2. With
    `weights`, the file must be a binary caffemodel (a prototxt holds no weights)."""
    net, _ = _read_net_as_written(path, weights)
    return upgrade_net(net, where=str(path))


def _read_net_as_written(path, weights=False):
    """The NetParameter in a prototxt or binary file, not upgraded, and whether it is binary."""
    data = _read_bytes(path)
    if _looks_like_text(data):
        if weights:
            raise ConfnetError(f"{path}: this looks like {kinds.sniff(data, True)}, but "
                               f"{kinds.WEIGHTS} is expected here")
        return _parse_text_file(path, data, data.decode("utf-8"), pb.NetParameter), False
    return _parse_binary(data, pb.NetParameter, path), True


def upgrade_net_file(source, destination):
    """Write the net in `source` (V0, V1 or current) to `destination` in the current format.

    A prototxt is written as text, a binary caffemodel as binary (its weights kept).
    Returns (binary, changed): the kind of file, and whether the upgrade changed anything.
    """
    original, binary = _read_net_as_written(source)
    upgraded = upgrade_net(_copy(original), where=str(source))
    (write_binary if binary else write_text)(upgraded, destination)
    return binary, upgraded != original


def upgrade_net(net, where="<net>"):
    """Bring `net` (a NetParameter, changed in place and returned) to the current format.

    V0 layers → V1 → V2 `layer`; data-layer scale/mean_file/crop_size/mirror →
    transform_param; net-level input/input_shape/input_dim → an Input layer; the old
    three-ParamSpec BatchNorm form → frozen statistics (lr_mult = decay_mult = 0).
    """
    if any(connection.HasField("layer") for connection in net.layers):
        _upgrade_v0_net(net, where)
    if len(net.layers):
        _upgrade_v1_net(net, where)
    for layer in net.layer:
        _upgrade_transform_fields(layer, where)
        _upgrade_batch_norm(layer)
    _upgrade_inputs(net, where)
    return net


def _copy(message):
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


def _replace(repeated, messages):
    """Make a repeated message field hold copies of `messages`."""
    copies = [_copy(message) for message in messages]
    del repeated[:]
    repeated.extend(copies)


# V0 ---------------------------------------------------------------------------

_V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS", "split": "SPLIT", "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

_CONV_OR_IP = {"conv": "convolution_param", "innerproduct": "inner_product_param"}
_CONV_OR_POOL = {"conv": "convolution_param", "pool": "pooling_param"}
_SOURCES = {"data": "data_param", "hdf5_data": "hdf5_data_param",
            "images": "image_data_param", "window_data": "window_data_param"}
_ANY = "*"

# V0 field -> (V0 layer types -> V1 sub-message, or _ANY), field name there.
_V0_FIELDS = {
    "num_output": (_CONV_OR_IP, "num_output"),
    "biasterm": (_CONV_OR_IP, "bias_term"),
    "weight_filler": (_CONV_OR_IP, "weight_filler"),
    "bias_filler": (_CONV_OR_IP, "bias_filler"),
    "pad": (_CONV_OR_POOL, "pad"),
    "kernelsize": (_CONV_OR_POOL, "kernel_size"),
    "stride": (_CONV_OR_POOL, "stride"),
    "group": ({"conv": "convolution_param"}, "group"),
    "pool": ({"pool": "pooling_param"}, "pool"),
    "dropout_ratio": ({"dropout": "dropout_param"}, "dropout_ratio"),
    "local_size": ({"lrn": "lrn_param"}, "local_size"),
    "alpha": ({"lrn": "lrn_param"}, "alpha"),
    "beta": ({"lrn": "lrn_param"}, "beta"),
    "k": ({"lrn": "lrn_param"}, "k"),
    "source": ({**_SOURCES, "infogain_loss": "infogain_loss_param"}, "source"),
    "batchsize": (_SOURCES, "batch_size"),
    "scale": (_ANY, "scale"),
    "meanfile": (_ANY, "mean_file"),
    "cropsize": (_ANY, "crop_size"),
    "mirror": (_ANY, "mirror"),
    "rand_skip": ({"data": "data_param", "images": "image_data_param"}, "rand_skip"),
    "shuffle_images": ({"images": "image_data_param"}, "shuffle"),
    "new_height": ({"images": "image_data_param"}, "new_height"),
    "new_width": ({"images": "image_data_param"}, "new_width"),
    "concat_dim": ({"concat": "concat_param"}, "concat_dim"),
    "det_fg_threshold": ({"window_data": "window_data_param"}, "fg_threshold"),
    "det_bg_threshold": ({"window_data": "window_data_param"}, "bg_threshold"),
    "det_fg_fraction": ({"window_data": "window_data_param"}, "fg_fraction"),
    "det_context_pad": ({"window_data": "window_data_param"}, "context_pad"),
    "det_crop_mode": ({"window_data": "window_data_param"}, "crop_mode"),
    "hdf5_output_param": ({"hdf5_output": None}, "hdf5_output_param"),
}
_V0_COPIED = ("name", "type", "blobs", "blobs_lr", "weight_decay")


def _upgrade_v0_net(net, where):
    _fold_padding_layers(net, where)
    for connection in net.layers:
        _upgrade_v0_layer(connection, where)


def _fold_padding_layers(net, where):
    """Drop V0 "padding" layers, moving their pad into the conv/pool layer they feed."""
    producer = {}
    kept = []
    for connection in net.layers:
        upgraded = _copy(connection)
        for j, blob in enumerate(connection.bottom):
            source = producer.get(blob)
            if source is None or source.layer.type != "padding":
                continue
            if connection.layer.type not in ("conv", "pool") or len(connection.bottom) != 1:
                raise ConfnetError(
                    f"{where}: V0 padding layer '{source.layer.name}' must feed a single-input "
                    f"conv or pool layer, not '{connection.layer.name}'")
            if len(source.bottom) != 1 or len(source.top) != 1:
                raise ConfnetError(
                    f"{where}: V0 padding layer '{source.layer.name}' needs one bottom and one top")
            upgraded.layer.pad = source.layer.pad
            upgraded.bottom[j] = source.bottom[0]
        if connection.layer.type != "padding":
            kept.append(upgraded)
        for blob in connection.top:
            producer[blob] = connection
    _replace(net.layers, kept)


def _upgrade_v0_layer(connection, where):
    """Turn the V0 `layer` inside a V1 connection into V1 fields."""
    v0 = connection.layer
    if v0.type not in _V0_TYPES:
        raise ConfnetError(f"{where}: V0 layer '{v0.name}' has unknown type '{v0.type}'")
    if v0.HasField("name"):
        connection.name = v0.name
    connection.type = pb.V1LayerParameter.LayerType.Value(_V0_TYPES[v0.type])
    connection.blobs.extend(v0.blobs)
    connection.blobs_lr.extend(v0.blobs_lr)
    connection.weight_decay.extend(v0.weight_decay)
    for field, value in v0.ListFields():
        if field.name not in _V0_COPIED:
            _move_v0_field(connection, v0, field.name, value, where)
    connection.ClearField("layer")


def _move_v0_field(connection, v0, name, value, where):
    targets, target_field = _V0_FIELDS[name]
    if targets == _ANY:
        destination = connection.transform_param
    elif v0.type in targets:
        sub = targets[v0.type]
        destination = getattr(connection, sub) if sub else connection
    else:
        raise ConfnetError(
            f"{where}: V0 layer '{v0.name}' of type '{v0.type}' cannot have field '{name}'")
    _assign(destination, target_field, value)


def _assign(message, name, value):
    """Set, append to (repeated) or copy into (message) field `name` of `message`."""
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        getattr(message, name).append(value)
    elif field.message_type is not None:
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


# V1 ---------------------------------------------------------------------------

_V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax",
    "BNLL": "BNLL", "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "DATA": "Data",
    "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# Every per-type sub-message of V1LayerParameter has the same name in LayerParameter.
_V1_SUB_MESSAGES = tuple(
    field.name for field in pb.V1LayerParameter.DESCRIPTOR.fields
    if field.name.endswith("_param"))


def _upgrade_v1_net(net, where):
    if len(net.layer):
        raise ConfnetError(f"{where}: the net mixes 'layer' and the old 'layers' format")
    upgraded = [_upgrade_v1_layer(v1) for v1 in net.layers]
    net.ClearField("layers")
    net.layer.extend(upgraded)


def _upgrade_v1_layer(v1):
    layer = pb.LayerParameter(
        bottom=v1.bottom, top=v1.top, include=v1.include, exclude=v1.exclude,
        blobs=v1.blobs, loss_weight=v1.loss_weight)
    if v1.HasField("name"):
        layer.name = v1.name
    if v1.HasField("type"):
        layer.type = _V1_TYPES[pb.V1LayerParameter.LayerType.Name(v1.type)]
    count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(count):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]  # same numbers in both enums
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    for name in _V1_SUB_MESSAGES:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    return layer


# V2 clean-ups -----------------------------------------------------------------

_TRANSFORM_HOLDERS = {"Data": "data_param", "ImageData": "image_data_param",
                      "WindowData": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def _upgrade_transform_fields(layer, where):
    """Move deprecated preprocessing fields of data layers into transform_param."""
    holder_name = _TRANSFORM_HOLDERS.get(layer.type)
    if holder_name is None or not layer.HasField(holder_name):
        return
    holder = getattr(layer, holder_name)
    for name in _TRANSFORM_FIELDS:
        if not holder.HasField(name):
            continue
        value = getattr(holder, name)
        transform = layer.transform_param
        if transform.HasField(name) and getattr(transform, name) != value:
            raise ConfnetError(
                f"{where}: layer '{layer.name}' sets {holder_name}.{name} and "
                f"transform_param.{name} to different values; keep transform_param only")
        setattr(transform, name, value)
        holder.ClearField(name)


def _upgrade_batch_norm(layer):
    """Old BatchNorm nets froze the three statistics blobs with three ParamSpecs."""
    if layer.type == "BatchNorm" and len(layer.param) == 3:
        for spec in layer.param:
            spec.lr_mult = 0
            spec.decay_mult = 0


def _upgrade_inputs(net, where):
    """Turn net-level input/input_shape/input_dim into an Input layer placed first."""
    if not (len(net.input) or len(net.input_shape) or len(net.input_dim)):
        return
    names = list(net.input)
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise ConfnetError(
                f"{where}: {len(names)} net inputs but {len(net.input_shape)} input_shape")
        shapes = [_copy(shape) for shape in net.input_shape]
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise ConfnetError(f"{where}: {len(names)} net inputs need {4 * len(names)} "
                               f"input_dim values, found {len(net.input_dim)}")
        dims = list(net.input_dim)
        shapes = [pb.BlobShape(dim=dims[4 * i:4 * i + 4]) for i in range(len(names))]
    else:
        raise ConfnetError(f"{where}: net input {names} has no input_shape or input_dim")
    layer = pb.LayerParameter(name="input", type="Input", top=names)
    layer.input_param.shape.extend(shapes)
    _replace(net.layer, [layer, *net.layer])
    for name in ("input", "input_shape", "input_dim"):
        net.ClearField(name)


# ---------------------------------------------------------------------------
# Solvers

_SOLVER_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                 "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def read_solver(path):
    """Read a solver prototxt into a SolverParameter, upgraded (see upgrade_solver)."""
    return upgrade_solver(read_text(path, pb.SolverParameter), where=str(path))


def upgrade_solver_file(source, destination):
    """Write the solver prototxt `source` to `destination` in the current format (text).

    Returns whether the upgrade changed anything.
    """
    original = read_text(source, pb.SolverParameter)
    upgraded = upgrade_solver(_copy(original), where=str(source))
    write_text(upgraded, destination)
    return upgraded != original


def upgrade_solver(solver, where="<solver>"):
    """Replace the deprecated `solver_type` enum by the `type` string; upgrade inline nets.

    Changes `solver` in place and returns it.
    """
    if solver.HasField("solver_type"):
        enum_name = pb.SolverParameter.SolverType.Name(solver.solver_type)
        name = _SOLVER_TYPES[enum_name]
        if solver.HasField("type") and solver.type != name:
            raise ConfnetError(f'{where}: solver_type {enum_name} contradicts type "{solver.type}"'
                               "; remove the deprecated solver_type")
        solver.type = name
        solver.ClearField("solver_type")
    for field in ("net_param", "train_net_param"):
        if solver.HasField(field):
            upgrade_net(getattr(solver, field), where=f"{where} ({field})")
    for net in solver.test_net_param:
        upgrade_net(net, where=f"{where} (test_net_param)")
    return solver


# ---------------------------------------------------------------------------
# Blobs


def blob_shape(blob_proto):
    """The shape of a BlobProto: legacy num/channels/height/width (4-d) if any is set."""
    legacy = ("num", "channels", "height", "width")
    if any(blob_proto.HasField(name) for name in legacy):
        return tuple(getattr(blob_proto, name) for name in legacy)
    return tuple(blob_proto.shape.dim)


def blob_to_array(blob_proto, diff=False, *, where="blob"):
    """The data (or diff) of a BlobProto as a float32 array of its shape.

    Values come from the double fields when those are filled, else from the float ones.
    """
    shape = blob_shape(blob_proto)
    kind = "diff" if diff else "data"
    values = getattr(blob_proto, f"double_{kind}")
    if not len(values):
        values = getattr(blob_proto, kind)
    count = math.prod(shape)
    if len(values) != count:
        raise ConfnetError(
            f"{where}: shape {list(shape)} needs {count} {kind} values, found {len(values)}")
    return np.array(values, dtype=np.float32).reshape(shape)


def array_to_blob(array, diff=None, out=None):
    """A BlobProto (or `out`, cleared and refilled) holding `array` as float data.

    `diff`, if given, must have the same shape and is stored as the blob's diff.
    """
    data = np.ascontiguousarray(array, dtype=np.float32)
    blob = pb.BlobProto() if out is None else out
    blob.Clear()
    blob.shape.dim.extend(data.shape)
    # Packed floats are appended as raw bytes: far faster than extending field by field.
    payload = _packed_floats(5, data)
    if diff is not None:
        diff = np.ascontiguousarray(diff, dtype=np.float32)
        if diff.shape != data.shape:
            raise ConfnetError(f"blob diff shape {list(diff.shape)} differs from data "
                               f"shape {list(data.shape)}")
        payload += _packed_floats(6, diff)
    blob.MergeFromString(payload)
    return blob


def _packed_floats(field_number, values):
    """Wire bytes of a packed repeated float field."""
    raw = values.astype("<f4", copy=False).tobytes()
    return _varint(field_number << 3 | 2) + _varint(len(raw)) + raw


def _varint(value):
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_binaryproto(path):
    """The array stored in a .binaryproto file (e.g. a mean file)."""
    return blob_to_array(read_binary(path, pb.BlobProto), where=str(path))


def write_binaryproto(array, path):
    """Store `array` as a BlobProto in a .binaryproto file, atomically."""
    write_binary(array_to_blob(array), path)
