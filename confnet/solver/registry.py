"""Optimizer registry: SolverParameter.type -> Solver subclass (``@register_solver("SGD")``)."""

from ..errors import ConfnetError

_SOLVERS = {}


def register_solver(type_name):
    def decorate(cls):
        if type_name in _SOLVERS:
            raise ValueError(f"solver type '{type_name}' is registered twice")
        _SOLVERS[type_name] = cls
        cls.type_name = type_name
        return cls
    return decorate


def solver_class(type_name):
    try:
        return _SOLVERS[type_name]
    except KeyError:
        raise ConfnetError(f"solver: unknown type '{type_name}'; known types: "
                           f"{', '.join(sorted(_SOLVERS))}") from None
