"""The tiny net the optimizer tests step: Input -> InnerProduct (lr_mult 1/2, decay_mult 1/0)
-> SoftmaxWithLoss, with fixed inputs, so an update can be computed by hand from its
gradients."""

import numpy as np
from google.protobuf import text_format

from confnet.proto import confnet_pb2 as pb
from confnet.solver import get_solver

NET = """
name: "tiny"
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "z"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss" }
"""
LR_MULT, DECAY_MULT, DECAY = [1, 2], [1, 0], 0.01


def make_solver(settings, lr_policy="fixed"):
    """A solver of the tiny net with weight_decay DECAY and the given extra settings."""
    text = (f'net_param {{ {NET} }} lr_policy: "{lr_policy}" weight_decay: {DECAY} max_iter: 10 '
            f'display: 0 random_seed: 3 {settings}')
    solver = get_solver(text_format.Parse(text, pb.SolverParameter()))
    net = solver.net
    g = np.random.default_rng(0)
    net.blobs["x"].data[...] = g.normal(size=(4, 3))
    net.blobs["y"].data[...] = [0, 1, 1, 0]
    return solver, net


def gradients(net):
    """The float64 gradients of the learnable parameters at the current weights."""
    net.clear_param_diffs()
    net.forward_backward()
    return [p.diff.astype(np.float64).copy() for p in net.learnable_params]
