"""Net diagrams (``confnet draw``): Graphviz DOT text written here, rendered to PNG or SVG by
Graphviz's ``dot`` program when it is installed.

Layers are boxes (name, type, and the fields set in the layer's parameter messages), blobs are
ellipses (name and, when the net can be built, shape). A blob rewritten in place (ReLU on ip1)
gets a new ellipse after the layer, so the diagram stays a left-to-right flow. ``phase`` TRAIN or
TEST keeps the layers of that phase, as the net would; ALL draws every layer and marks the ones
limited to a phase.
"""

import contextlib
import itertools
import logging
import os
import shutil
import subprocess

from .atomic import atomic_path
from .errors import ConfnetError
from .layers import TEST, TRAIN
from .net import Net, filter_layers
from .proto import confnet_pb2 as pb
from .proto import io

log = logging.getLogger("confnet")

FORMATS = ("png", "svg", "dot")
PHASES = {"TRAIN": TRAIN, "TEST": TEST}
_COLORS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
           "InnerProduct": "#CC33FF", "Data": "#66CC66", "Input": "#66CC66",
           "ImageData": "#66CC66"}
_LAYER_COLOR, _BLOB_COLOR = "#6495ED", "#E0E0E0"
_MAX_PARAM_LINES = 6


def net_to_dot(param, phase="ALL", rankdir="LR", shapes=None):
    """DOT text of a NetParameter. ``shapes``: {phase name: {blob: shape}} to label blobs."""
    layers = _layers(param, phase)
    lines = [f"digraph {_quote(param.name or 'net')} {{", f"  rankdir={rankdir};",
             '  node [fontname="Helvetica", fontsize=10];', '  edge [arrowsize=0.7];']
    version = {}   # blob name -> node id of its latest ellipse
    ellipses = itertools.count()

    def blob_node(name, new=False):
        if new or name not in version:
            node = version[name] = f"blob {next(ellipses)} {name}"
            label = "\n".join([name, *_shape_lines(shapes, name)])
            lines.append(f"  {_quote(node)} [shape=ellipse, style=filled, "
                         f"fillcolor={_quote(_BLOB_COLOR)}, label={_quote(label)}];")
        return version[name]

    for index, lp in enumerate(layers):
        node = f"layer {index} {lp.name}"
        label = "\n".join([lp.name, f"({lp.type}{_phase_note(lp, phase)})", *_param_lines(lp)])
        color = _COLORS.get(lp.type, _LAYER_COLOR)
        lines.append(f"  {_quote(node)} [shape=box, style=\"filled,rounded\", "
                     f"fillcolor={_quote(color)}, label={_quote(label)}];")
        for name in lp.bottom:
            lines.append(f"  {_quote(blob_node(name))} -> {_quote(node)};")
        for name in lp.top:
            lines.append(f"  {_quote(node)} -> {_quote(blob_node(name, name in lp.bottom))};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layers(param, phase):
    if phase == "ALL":
        return list(param.layer)
    if phase not in PHASES:
        raise ConfnetError(f"phase must be TRAIN, TEST or ALL, not '{phase}'")
    return filter_layers(param, pb.NetState(phase=PHASES[phase]))


def _phase_note(lp, phase):
    if phase != "ALL":
        return ""
    phases = {pb.Phase.Name(rule.phase) for rule in lp.include if rule.HasField("phase")}
    phases |= {"not " + pb.Phase.Name(rule.phase) for rule in lp.exclude
               if rule.HasField("phase")}
    return f", {' '.join(sorted(phases))}" if phases else ""


def _param_lines(lp):
    """'field value' for the scalar fields set in the layer's *_param messages."""
    out = []
    for field, value in lp.ListFields():
        if not field.name.endswith("_param") or field.message_type is None:
            continue
        for sub, sub_value in value.ListFields():
            text = _field_text(sub, sub_value)
            if text is not None:
                out.append(f"{sub.name} {text}")
    if lp.loss_weight:
        out.append("loss_weight " + " ".join(f"{w:g}" for w in lp.loss_weight))
    return out[:_MAX_PARAM_LINES]


def _field_text(field, value):
    values = list(value) if field.is_repeated else [value]
    if field.message_type is not None:
        if field.message_type.name != "BlobShape":
            return None   # fillers and other sub-messages: too much for a box
        return ", ".join("x".join(map(str, v.dim)) for v in values)
    if field.enum_type is not None:
        values = [field.enum_type.values_by_number[v].name for v in values]
    elif field.type == field.TYPE_FLOAT or field.type == field.TYPE_DOUBLE:
        values = [f"{v:g}" for v in values]
    return " ".join(str(v) for v in values)


def _shape_lines(shapes, name):
    if not shapes:
        return []
    found = {phase: table[name] for phase, table in shapes.items() if name in table}
    texts = {phase: "x".join(map(str, shape)) or "scalar" for phase, shape in found.items()}
    if len(set(texts.values())) == 1:
        return list(set(texts.values()))
    return [f"{text} ({phase})" for phase, text in texts.items()]


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def blob_shapes(param, phase):
    """{phase name: {blob: shape}} of the phases drawn, from nets built quietly; phases whose net
    cannot be built (a database that is missing, say) are left out, with a warning."""
    shapes = {}
    for name in (PHASES if phase == "ALL" else [phase]):
        try:
            with _quiet():
                net = Net(param, PHASES[name])
        except ConfnetError as error:
            log.warning("drawing the %s net without blob shapes: %s", name, error)
            continue
        shapes[name] = {blob: b.shape for blob, b in net.blobs.items()}
    return shapes


@contextlib.contextmanager
def _quiet():
    logger = logging.getLogger("confnet")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def output_format(out):
    extension = os.path.splitext(out)[1].lower().lstrip(".")
    if extension not in FORMATS:
        raise ConfnetError(f"{out}: cannot tell the format; name the output .png, .svg or .dot")
    return extension


def draw(model, out, phase="ALL", rankdir="LR", with_shapes=True):
    """Draw the net in prototxt ``model`` into ``out`` (.png, .svg or .dot)."""
    fmt = output_format(out)
    dot = shutil.which("dot")
    if fmt != "dot" and dot is None:
        raise ConfnetError(f"{out}: writing {fmt.upper()} needs Graphviz's 'dot' program, which "
                           "is not installed; install Graphviz (apt-get install graphviz, brew "
                           "install graphviz) or write a .dot file")
    param = io.read_net(model)
    shapes = blob_shapes(param, phase) if with_shapes else None
    text = net_to_dot(param, phase, rankdir, shapes)
    if fmt == "dot":
        with atomic_path(out) as temp, open(temp, "w", encoding="utf-8") as stream:
            stream.write(text)
    else:
        render(dot, text, out, fmt)


def render(dot, text, out, fmt):
    """Run Graphviz ``dot`` on DOT ``text``, writing ``out`` only when it succeeds."""
    with atomic_path(out) as temp:
        _run_dot([dot, f"-T{fmt}", "-o", temp], text, out)


def render_bytes(text, fmt, where="the diagram"):
    """The bytes of DOT ``text`` rendered by Graphviz ``dot`` as ``fmt`` (png, svg, pdf, ...)."""
    dot = shutil.which("dot")
    if dot is None:
        raise ConfnetError(f"{where}: rendering {fmt.upper()} needs Graphviz's 'dot' program, "
                           "which is not installed; install Graphviz (apt-get install graphviz, "
                           "brew install graphviz) or ask for the DOT text")
    return _run_dot([dot, f"-T{fmt}"], text, where).stdout


def _run_dot(command, text, where):
    result = subprocess.run(command, input=text.encode("utf-8"), capture_output=True,
                            check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise ConfnetError(f"{where}: Graphviz dot failed: {reason[0]}")
    return result
