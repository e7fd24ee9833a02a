"""Learning-rate policies of SolverParameter.lr_policy, as functions of the iteration t.

    fixed      base_lr
    step       base_lr * gamma ^ floor(t / stepsize)
    exp        base_lr * gamma ^ t
    inv        base_lr * (1 + gamma * t) ^ (-power)
    multistep  base_lr * gamma ^ (number of stepvalue entries <= t)
    poly       base_lr * (1 - t / max_iter) ^ power
    sigmoid    base_lr / (1 + exp(-gamma * (t - stepsize)))
"""

import math

from ..errors import ConfnetError


def learning_rate(param, it):
    policy = param.lr_policy
    if not policy:
        raise ConfnetError("solver: lr_policy is not set; use one of fixed, step, exp, inv, "
                           "multistep, poly, sigmoid")
    base, gamma = param.base_lr, param.gamma
    if policy == "fixed":
        return base
    if policy == "step":
        _need(param.stepsize > 0, "step", "a positive stepsize")
        return base * gamma ** (it // param.stepsize)
    if policy == "exp":
        return base * gamma ** it
    if policy == "inv":
        return base * (1 + gamma * it) ** (-param.power)
    if policy == "multistep":
        return base * gamma ** current_step(param, it)
    if policy == "poly":
        _need(param.max_iter > 0, "poly", "a positive max_iter")
        return base * (1 - it / param.max_iter) ** param.power
    if policy == "sigmoid":
        return base / (1 + math.exp(-gamma * (it - param.stepsize)))
    raise ConfnetError(f"solver: unknown lr_policy '{policy}'; known: fixed, step, exp, inv, "
                       "multistep, poly, sigmoid")


def current_step(param, it):
    """How many multistep boundaries iteration ``it`` has passed (SolverState.current_step)."""
    return sum(1 for v in param.stepvalue if it >= v)


def _need(ok, policy, what):
    if not ok:
        raise ConfnetError(f"solver: lr_policy '{policy}' needs {what}")
