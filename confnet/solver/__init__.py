"""Solvers: the training loop (solver.py), learning-rate policies and one module per optimizer.

Importing this package imports every optimizer module, so adding one means adding its file.
"""

import importlib
import pkgutil

from .registry import register_solver, solver_class
from .solver import Solver

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"registry", "solver", "lr_policy"}:
        importlib.import_module(f"{__name__}.{_module.name}")


def get_solver(source):
    """Build the solver a SolverParameter or a solver.prototxt path describes."""
    from ..proto import io
    path = source if isinstance(source, str) else None
    param = io.read_solver(source) if path else source
    return solver_class(param.type)(param, path)


__all__ = ["Solver", "get_solver", "register_solver", "solver_class"]
