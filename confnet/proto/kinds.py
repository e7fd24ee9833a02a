"""What kind of file a path holds, so that a file given in the wrong place (a net as the solver,
a .caffemodel as a snapshot) is named for what it is instead of failing deep in protobuf.

``sniff(data)`` looks at the bytes only: magic numbers for HDF5 and images, then, for text, which
of Caffe's text messages parses it, and for binary protobuf, which message parses it without
unknown fields and with the fields that make that kind of file. ``expect(path, data, wanted)``
raises a one-line ConfnetError naming both kinds when the file is of another kind.
"""

from google.protobuf import text_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb

NET_TEXT = "a net definition (prototxt)"
SOLVER_TEXT = "a solver definition (solver.prototxt)"
WEIGHTS = "a .caffemodel (binary net weights)"
SOLVER_STATE = "a .solverstate (solver state)"
BLOB = "a .binaryproto (a blob, such as a mean file)"
HDF5 = "an HDF5 file"
TEXT = "a text file"

_MAGIC = [(b"\x89HDF\r\n\x1a\n", HDF5), (b"\x89PNG", "a PNG image"),
          (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image")]

# Text kinds: the message and the fields one of its files always sets.
_TEXT_KINDS = [(NET_TEXT, pb.NetParameter, ("layer", "layers")),
               (SOLVER_TEXT, pb.SolverParameter,
                ("net", "net_param", "train_net", "train_net_param", "base_lr", "max_iter"))]
# Binary kinds, tried in order: a SolverState or a BlobProto can parse as nothing else cleanly.
_BINARY_KINDS = [(SOLVER_STATE, pb.SolverState, ("learned_net", "history")),
                 (WEIGHTS, pb.NetParameter, ("layer", "layers")),
                 (BLOB, pb.BlobProto, ("data", "shape", "num", "double_data"))]


def sniff(data, is_text):
    """A phrase naming the kind of file `data` is ("a .caffemodel (binary net weights)"), or
    None when it is none of the kinds confnet knows. ``is_text``: the bytes are UTF-8 text."""
    for magic, kind in _MAGIC:
        if data.startswith(magic) and not is_text:
            return kind
    if is_text:
        text = data.decode("utf-8")
        for kind, message_cls, fields in _TEXT_KINDS:
            message = _parse_text(text, message_cls)
            if message is not None and any(_has(message, f) for f in fields):
                return kind
        return TEXT
    for kind, message_cls, fields in _BINARY_KINDS:
        message = message_cls()
        try:
            message.ParseFromString(data)
        except DecodeError:
            continue
        if looks_like(message, kind):
            return kind
    return None


def expect(path, data, is_text, *wanted):
    """Raise "PATH: this looks like KIND, but WANTED is expected here" when `data` is a file of
    another known kind; return quietly when it is of a wanted kind or of no known kind (a text
    file that parses as nothing keeps its own error, with the line and column)."""
    kind = sniff(data, is_text)
    if kind not in (None, TEXT) and kind not in wanted:
        raise ConfnetError(f"{path}: this looks like {kind}, but {' or '.join(wanted)} is "
                           "expected here")


def _parse_text(text, message_cls):
    message = message_cls()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError:
        return None
    return message


def _has(message, field):
    try:
        return message.HasField(field)
    except ValueError:   # a repeated field has no presence, only a length
        return len(getattr(message, field)) > 0


def looks_like(message, kind):
    """Whether a parsed message has what a file of `kind` always holds, and nothing unknown."""
    fields = next(f for k, _, f in _TEXT_KINDS + _BINARY_KINDS if k == kind)
    return not len(UnknownFieldSet(message)) and any(_has(message, f) for f in fields)
