"""SGD against an update computed by hand from the net's own gradients."""

import numpy as np
import pytest

from tests.solver.tiny_net import gradients
from tests.solver.tiny_net import make_solver as tiny_make_solver


def make_solver(extra="", momentum=0.9):
    return tiny_make_solver(f"base_lr: 0.1 momentum: {momentum} {extra}")


def test_two_sgd_steps_match_hand_computation():
    _, net = make_solver()
    w = [p.data.astype(np.float64).copy() for p in net.learnable_params]
    lr_mult, decay_mult = [1, 2], [1, 0]
    v = [np.zeros_like(x) for x in w]
    for _ in range(2):
        g = gradients(net)
        for i in range(2):
            v[i] = 0.9 * v[i] + 0.1 * lr_mult[i] * (g[i] + 0.01 * decay_mult[i] * w[i])
            w[i] = w[i] - v[i]
        for p, x in zip(net.learnable_params, w):   # evaluate the next gradient at hand weights
            p.data[...] = x
    solver2, net2 = make_solver()
    solver2.step(2)
    for p, x in zip(net2.learnable_params, w):
        np.testing.assert_allclose(p.data, x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solver2.history[0].data, v[0], rtol=1e-5, atol=1e-6)


def test_iter_size_averages_gradients():
    solver, net = make_solver("iter_size: 3", momentum=0)
    w0 = [p.data.astype(np.float64).copy() for p in net.learnable_params]
    g = gradients(net)
    solver.step(1)
    expected = w0[0] - 0.1 * (g[0] + 0.01 * w0[0])
    np.testing.assert_allclose(net.learnable_params[0].data, expected, rtol=1e-5, atol=1e-6)


def test_l1_regularization_and_clipping():
    solver, net = make_solver('regularization_type: "L1" clip_gradients: 0.05', momentum=0)
    w0 = [p.data.astype(np.float64).copy() for p in net.learnable_params]
    g = gradients(net)
    norm = np.sqrt(sum(float((x ** 2).sum()) for x in g))
    assert norm > 0.05
    solver.step(1)
    clipped = g[0] * 0.05 / norm
    expected = w0[0] - 0.1 * (clipped + 0.01 * np.sign(w0[0]))
    np.testing.assert_allclose(net.learnable_params[0].data, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    ('regularization_type: "L3"', "regularization_type"),
    ("iter_size: 0", "iter_size"),
])
def test_bad_solver_settings(bad, message):
    from confnet.errors import ConfnetError
    with pytest.raises(ConfnetError, match=message):
        make_solver(bad)
