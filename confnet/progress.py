"""A live progress line for training on a terminal:

    iter 1200/3000 (40%)  smoothed loss 0.0912  lr 0.00915  2637 img/s  ETA 0:00:43

``smoothed loss`` is the mean of the last 20 iterations' losses. The line is rewritten in place
(carriage return) at most ``interval`` seconds apart and erased before each log line, so the Caffe-style
log lines stay intact. Only for terminals: when stderr is a file or a pipe, the log lines alone
are written.
"""

import logging
import shutil
import sys
import time
from collections import deque

from .solver.lr_policy import learning_rate

_ERASE = "\r\x1b[K"


class ProgressLine(logging.Filter):
    """Attach to a solver (``attach``) to show its progress; ``close`` erases the line."""

    def __init__(self, stream=None, interval=0.2, clock=time.monotonic):
        super().__init__()
        self.stream = stream or sys.stderr
        self.interval, self.clock = interval, clock
        self.shown = False
        self._start = self._last_draw = None
        self._start_iter = 0
        self._rate = None        # images per second, smoothed
        self._rate_mark = None   # (time, iteration) of the last rate measurement
        self._losses = deque(maxlen=20)

    def attach(self, solver, logger=None):
        solver.on_iteration.append(self.update)
        for handler in (logger or logging.getLogger("confnet")).handlers:
            handler.addFilter(self)
        return self

    def filter(self, record):
        """Called before a log line is written: erase the live line so the log line is whole."""
        self.erase()
        return True

    def erase(self):
        if self.shown:
            self.stream.write(_ERASE)
            self.stream.flush()
            self.shown = False

    def close(self, logger=None):
        self.erase()
        for handler in (logger or logging.getLogger("confnet")).handlers:
            handler.removeFilter(self)

    def update(self, solver, loss):
        if loss is not None:   # None: a device run reads its losses at display iterations
            self._losses.append(loss)
        now = self.clock()
        if self._start is None:
            self._start, self._start_iter = now, solver.iter - 1
            self._rate_mark = (now, solver.iter - 1)
        done = solver.iter >= solver.param.max_iter
        if self._last_draw is not None and now - self._last_draw < self.interval and not done:
            return
        self._last_draw = now
        self._measure(solver, now)
        self.stream.write(_ERASE + self.text(solver, now)[:shutil.get_terminal_size().columns - 1])
        self.stream.flush()
        self.shown = True

    def _measure(self, solver, now):
        mark_time, mark_iter = self._rate_mark
        if now > mark_time and solver.iter > mark_iter:
            images = (solver.iter - mark_iter) * solver.batch_size() * solver.param.iter_size
            rate = images / (now - mark_time)
            self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
            self._rate_mark = (now, solver.iter)

    def text(self, solver, now):
        total = solver.param.max_iter
        parts = [f"iter {solver.iter}/{total} ({100 * solver.iter // max(total, 1)}%)"]
        if self._losses:
            parts.append(f"smoothed loss {sum(self._losses) / len(self._losses):.4g}")
        parts.append(f"lr {learning_rate(solver.param, solver.iter - 1):.4g}")
        if self._rate is not None:
            parts.append(f"{self._rate:.0f} img/s")
        done = solver.iter - self._start_iter
        if done > 0 and now > self._start:
            parts.append(f"ETA {_clock((total - solver.iter) * (now - self._start) / done)}")
        return "  ".join(parts)


def _clock(seconds):
    seconds = max(round(seconds), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
