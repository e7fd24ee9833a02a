import math

import pytest
from google.protobuf import text_format

from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb
from confnet.solver.lr_policy import current_step, learning_rate


def solver(text):
    return text_format.Parse(text, pb.SolverParameter())


@pytest.mark.parametrize("text, it, expected", [
    ('lr_policy: "fixed" base_lr: 0.1', 1000, 0.1),
    ('lr_policy: "step" base_lr: 0.1 gamma: 0.5 stepsize: 10', 25, 0.1 * 0.25),
    ('lr_policy: "exp" base_lr: 0.1 gamma: 0.99', 7, 0.1 * 0.99 ** 7),
    ('lr_policy: "inv" base_lr: 0.01 gamma: 0.0001 power: 0.75', 500,
     0.01 * (1 + 0.0001 * 500) ** -0.75),
    ('lr_policy: "multistep" base_lr: 1 gamma: 0.1 stepvalue: 10 stepvalue: 20', 9, 1.0),
    ('lr_policy: "multistep" base_lr: 1 gamma: 0.1 stepvalue: 10 stepvalue: 20', 10, 0.1),
    ('lr_policy: "multistep" base_lr: 1 gamma: 0.1 stepvalue: 10 stepvalue: 20', 35, 0.01),
    ('lr_policy: "poly" base_lr: 0.2 power: 2 max_iter: 100', 30, 0.2 * 0.7 ** 2),
    ('lr_policy: "sigmoid" base_lr: 0.5 gamma: -0.1 stepsize: 40', 50,
     0.5 / (1 + math.exp(0.1 * 10))),
])
def test_policies(text, it, expected):
    assert learning_rate(solver(text), it) == pytest.approx(expected, rel=1e-6)


def test_current_step_counts_passed_boundaries():
    p = solver('lr_policy: "multistep" stepvalue: 5 stepvalue: 8')
    assert [current_step(p, i) for i in (0, 4, 5, 7, 8, 100)] == [0, 0, 1, 1, 2, 2]


def test_unknown_policy_is_an_error():
    with pytest.raises(ConfnetError, match="unknown lr_policy 'cosine'"):
        learning_rate(solver('lr_policy: "cosine"'), 1)


def test_step_needs_stepsize():
    with pytest.raises(ConfnetError, match="stepsize"):
        learning_rate(solver('lr_policy: "step"'), 1)
