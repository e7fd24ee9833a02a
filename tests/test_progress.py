"""The live progress line: its content, rate limiting, and erasing itself before log lines."""

import io
import itertools
import logging

from confnet import log as logsetup
from confnet.progress import ProgressLine
from tests.test_signals import make_solver


def test_progress_line(tmp_path, tiny_lmdb):
    solver = make_solver(tmp_path, tiny_lmdb, max_iter=6)
    solver.param.display = 3
    stream = io.StringIO()
    logger = logsetup.setup(logging.INFO, stream)
    ticks = itertools.count()
    progress = ProgressLine(stream, interval=1.5, clock=lambda: next(ticks)).attach(solver)
    solver.solve()
    progress.close()
    text = stream.getvalue()
    lines = [chunk for chunk in text.split("\r\x1b[K") if chunk.startswith("iter ")]
    # Clock ticks 0, 1, 2, ...: drawn at the first update, then every 2 ticks, and at the end.
    assert [line.split()[1] for line in lines] == ["1/6", "3/6", "5/6", "6/6"]
    assert "lr 0.01" in lines[-1] and "img/s" in lines[-1] and "ETA 0:00:00" in lines[-1]
    assert "smoothed loss " in lines[0]
    # What a terminal shows of each log line (after the last carriage return) starts clean: the
    # live line was erased just before it.
    shown = [line.split("\r")[-1] for line in text.split("\n") if "solver.py" in line]
    assert shown and all(line.startswith(("\x1b[KI", "I")) for line in shown)
    assert not progress.shown and text.endswith("\n")     # no live line left behind
    assert progress not in logger.handlers[0].filters
