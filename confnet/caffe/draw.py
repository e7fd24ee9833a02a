"""pycaffe's ``caffe.draw``: diagrams of a NetParameter, on confnet's diagram code
(``confnet draw``): layers as boxes with their parameters, blobs as ellipses.

pycaffe builds the graph with pydot; here the graph is DOT text rendered by Graphviz's ``dot``
program, so ``get_pydot_graph`` returns a small ``DotGraph`` with the pydot methods scripts use
(``to_string``, ``create``, ``create_png``, ``write``, ``write_png``). As in pycaffe, the net is
drawn from its definition alone (no net is built, so no blob shapes); ``label_edges`` is
accepted for compatibility: the parameters pycaffe writes on edges (num_output, batch_size) are
already in confnet's layer boxes.
"""

import os

from .. import draw as _draw
from ..atomic import atomic_path
from ..errors import ConfnetError
from ..layers import TEST, TRAIN

_PHASE_NAMES = {None: "ALL", TRAIN: "TRAIN", TEST: "TEST"}


class DotGraph:
    """A diagram as DOT text, rendered on request."""

    def __init__(self, text):
        self.text = text

    def to_string(self):
        return self.text

    def create(self, prog="dot", format="png"):
        """The diagram rendered as ``format`` (png, svg, pdf, ...), as bytes."""
        if prog != "dot":
            raise ConfnetError(f"DotGraph.create: only Graphviz 'dot' lays out nets, not "
                               f"'{prog}'")
        if format == "dot":
            return self.text.encode("utf-8")
        return _draw.render_bytes(self.text, format)

    def create_png(self):
        return self.create(format="png")

    def write(self, path, format="raw"):
        """Write the diagram: ``raw``/``dot`` writes the DOT text, other formats render."""
        data = self.create(format="dot" if format == "raw" else format)
        with atomic_path(path) as temp, open(temp, "wb") as stream:
            stream.write(data)

    def write_png(self, path):
        self.write(path, format="png")


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None):
    """The diagram of NetParameter ``caffe_net``; ``rankdir`` LR, TB, BT or RL; ``phase``
    caffe.TRAIN or caffe.TEST keeps that phase's layers, None draws them all."""
    if phase not in _PHASE_NAMES:
        raise ConfnetError(f"draw: phase must be caffe.TRAIN, caffe.TEST or None, not {phase!r}")
    if rankdir not in ("LR", "TB", "BT", "RL"):
        raise ConfnetError(f"draw: rankdir must be LR, TB, BT or RL, not {rankdir!r}")
    return DotGraph(_draw.net_to_dot(caffe_net, _PHASE_NAMES[phase], rankdir))


def draw_net(caffe_net, rankdir, ext="png", phase=None):
    """The diagram rendered as ``ext`` (png, svg, pdf, ... or dot for the text), as bytes."""
    return get_pydot_graph(caffe_net, rankdir, phase=phase).create(format=ext)


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None):
    """Write the diagram to ``filename``; the format is its extension (.png, .svg, .dot, ...)."""
    ext = os.path.splitext(filename)[1].lstrip(".").lower()
    if not ext:
        raise ConfnetError(f"{filename}: cannot tell the format; end the name in .png, .svg "
                           "or .dot")
    get_pydot_graph(caffe_net, rankdir, phase=phase).write(filename, format=ext)
