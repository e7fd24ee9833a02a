"""Nesterov, AdaGrad, RMSProp, AdaDelta and Adam against updates computed by hand (float64) from
the net's own gradients, with Caffe's history layout, settings checks and an exact Adam resume."""

import math

import numpy as np
import pytest
from google.protobuf import text_format

from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io
from confnet.solver import solver_class
from tests.solver.tiny_net import DECAY, DECAY_MULT, LR_MULT, gradients, make_solver

# Each rule: (g, state, lr, t) -> step, with g already regularized, lr = base_lr * lr_mult,
# t = iteration + 1 and state a dict of this parameter's float64 history, starting at zeros.

def nesterov(g, s, lr, t, momentum=0.9):
    v_old = s["v"]
    s["v"] = momentum * v_old + lr * g
    return (1 + momentum) * s["v"] - momentum * v_old


def adagrad(g, s, lr, t, delta=0.1):
    s["h"] = s["h"] + g ** 2
    return lr * g / (np.sqrt(s["h"]) + delta)


def rmsprop(g, s, lr, t, decay=0.9, delta=0.01):
    s["h"] = decay * s["h"] + (1 - decay) * g ** 2
    return lr * g / (np.sqrt(s["h"]) + delta)


def adadelta(g, s, lr, t, momentum=0.95, delta=1e-6):
    s["h"] = momentum * s["h"] + (1 - momentum) * g ** 2
    d = g * np.sqrt((s["u"] + delta) / (s["h"] + delta))
    s["u"] = momentum * s["u"] + (1 - momentum) * d ** 2
    return lr * d


def adam(g, s, lr, t, beta1=0.9, beta2=0.999, eps=1e-3):
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["v"] = beta2 * s["v"] + (1 - beta2) * g ** 2
    return lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * s["m"] / (np.sqrt(s["v"]) + eps)


CASES = {   # type: (solver settings, rule, history names in Caffe's .solverstate order)
    "Nesterov": ("base_lr: 0.1 momentum: 0.9", nesterov, ["v"]),
    "AdaGrad": ("base_lr: 0.1 delta: 0.1", adagrad, ["h"]),
    "RMSProp": ("base_lr: 0.01 rms_decay: 0.9 delta: 0.01", rmsprop, ["h"]),
    "AdaDelta": ("base_lr: 1.0 momentum: 0.95 delta: 1e-6", adadelta, ["h", "u"]),
    "Adam": ("base_lr: 0.1 momentum: 0.9 momentum2: 0.999 delta: 1e-3", adam, ["m", "v"]),
}


def base_lr(settings):
    return float(settings.split("base_lr: ")[1].split()[0])


@pytest.mark.parametrize("kind", sorted(CASES))
def test_three_steps_match_hand_computation(kind):
    settings, rule, names = CASES[kind]
    solver, net = make_solver(f'type: "{kind}" {settings}')
    assert type(solver).type_name == kind
    w0 = [p.data.astype(np.float64).copy() for p in net.learnable_params]
    w = [x.copy() for x in w0]
    state = [{name: np.zeros_like(x) for name in names} for x in w]
    for t in (1, 2, 3):
        g = gradients(net)
        for i in range(2):
            step = rule(g[i] + DECAY * DECAY_MULT[i] * w[i], state[i],
                        base_lr(settings) * LR_MULT[i], t)
            w[i] = w[i] - step
        for p, x in zip(net.learnable_params, w):   # the next gradient is taken at hand weights
            p.data[...] = x

    solver2, net2 = make_solver(f'type: "{kind}" {settings}')
    solver2.step(3)
    for p, x, x0 in zip(net2.learnable_params, w, w0):
        np.testing.assert_allclose(p.data, x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p.data - x0, x - x0, rtol=1e-4, atol=1e-7)   # the steps
    # Caffe's layout: the first blob of every parameter, then the second blob of every parameter.
    expected = [state[i][name] for name in names for i in range(2)]
    assert len(solver2.history) == len(expected)
    for h, x in zip((h.data for h in solver2.history), expected):
        assert h.shape == x.shape and h.dtype == np.float32
        np.testing.assert_allclose(h, x, rtol=1e-5, atol=1e-7)


def test_type_names_and_deprecated_solver_type_enum():
    for kind in CASES:
        assert solver_class(kind).type_name == kind
    legacy = io.upgrade_solver(text_format.Parse("solver_type: ADADELTA", pb.SolverParameter()))
    assert solver_class(legacy.type).__name__ == "AdaDeltaSolver"
    with pytest.raises(ConfnetError, match="known types: .*AdaDelta.*Adam.*Nesterov.*RMSProp"):
        solver_class("ADAM")


@pytest.mark.parametrize("kind, bad, message", [
    ("AdaGrad", "momentum: 0.9", "momentum cannot be used with AdaGrad"),
    ("RMSProp", "momentum: 0.9", "momentum cannot be used with RMSProp"),
    ("RMSProp", "rms_decay: 1.0", "rms_decay"),
    ("RMSProp", "rms_decay: -0.1", "rms_decay"),
])
def test_settings_caffe_refuses(kind, bad, message):
    with pytest.raises(ConfnetError, match=message):
        make_solver(f'type: "{kind}" base_lr: 0.1 {bad}')


def test_adam_resume_matches_straight_run(tmp_path):
    settings = ('type: "Adam" base_lr: 0.05 gamma: 0.5 stepsize: 2 momentum: 0.9 '
                f'momentum2: 0.99 snapshot_prefix: "{tmp_path}/adam" ')
    straight, _ = make_solver(settings, "step")
    straight.step(5)

    first, _ = make_solver(settings + "snapshot: 2", "step")
    first.step(2)
    state = io.read_binary(str(tmp_path / "adam_iter_2.solverstate"), pb.SolverState)
    assert state.iter == 2
    shapes = [list(io.blob_to_array(b).shape) for b in state.history]
    assert shapes == [[2, 3], [2], [2, 3], [2]]   # m of weight and bias, then their v, as Caffe
    np.testing.assert_array_equal(io.blob_to_array(state.history[3]), first.history[3].data)

    resumed, _ = make_solver(settings, "step")
    resumed.restore(str(tmp_path / "adam_iter_2.solverstate"))
    assert resumed.iter == 2
    resumed.step(3)
    for a, b in zip(straight.net.learnable_params, resumed.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)
    for a, b in zip(straight.history, resumed.history):
        np.testing.assert_array_equal(a.data, b.data)
