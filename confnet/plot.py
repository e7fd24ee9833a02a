"""Training curves from a metrics CSV (``confnet plot``): the train loss and the test losses on
the left, the other test outputs (accuracy) on the right, against the iteration.

matplotlib is the optional extra ``plot`` and is imported only when a plot is drawn.
"""

import os

from .atomic import atomic_path
from .errors import ConfnetError
from .metrics import read_csv

FORMATS = ("png", "svg", "pdf")


def curves(columns, rows):
    """{column: ([iterations], [values])} of every value column that has at least one value."""
    out = {}
    for name in columns[columns.index("train_loss"):]:
        points = [(int(r["iteration"]), float(r[name])) for r in rows if r.get(name)]
        if points:
            out[name] = tuple(map(list, zip(*points)))
    return out


def plot_metrics(csv_path, out, title=None):
    """Draw the curves of the metrics CSV ``csv_path`` into ``out`` (.png, .svg or .pdf)."""
    extension = os.path.splitext(out)[1].lower().lstrip(".")
    if extension not in FORMATS:
        raise ConfnetError(f"{out}: name the plot .png, .svg or .pdf")
    columns, rows = read_csv(csv_path)
    found = curves(columns, rows)
    if not found:
        raise ConfnetError(f"{csv_path}: no values to plot yet (only a header); train for at "
                           "least one display or test interval")
    figure = _figure(found, title or os.path.basename(csv_path))
    with atomic_path(out) as temp:
        figure.savefig(temp, format=extension, dpi=100)


def _figure(found, title):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfnetError("confnet plot needs matplotlib: pip install confnet[plot]") from None
    losses = {k: v for k, v in found.items() if k == "train_loss" or "loss" in k.split("/")[-1]}
    others = {k: v for k, v in found.items() if k not in losses}
    panels = [p for p in ((losses, "loss"), (others, "test outputs")) if p[0]]
    figure = Figure(figsize=(6 * len(panels), 4.5), constrained_layout=True)
    for axes, (series, ylabel) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for name, (x, y) in series.items():
            style = {"linewidth": 1.0} if name == "train_loss" else {"marker": "o",
                                                                     "markersize": 3}
            axes.plot(x, y, label=name.replace("_", " ") if name == "train_loss" else name,
                      **style)
        values = [v for _, y in series.values() for v in y]
        if ylabel == "loss" and min(values) > 0 and max(values) > 100 * min(values):
            axes.set_yscale("log")   # losses spanning decades: the late ones stay readable
        axes.set_xlabel("iteration")
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return figure


