"""Training metrics as CSV: written by the solver while it trains, or parsed from a training log
written by Caffe or by confnet. Both give the same columns, so ``confnet plot`` reads either:

    iteration,seconds,lr,train_loss,test0/accuracy,test0/loss
    0,0.512,,,0.0982,2.3051         <- a test row (test net #0 at iteration 0)
    0,0.601,0.01,2.3102,,           <- a display row (smoothed train loss and learning rate)

``seconds`` counts from the start of training (of the log, for a parsed log). A test output with
several values (a blob of more than one element) gets one column per value: ``test0/name[k]``.

The same rows can go to TensorBoard as scalars (``TensorBoardWriter``, the ``tensorboard``
extra): ``train/loss``, ``train/lr``, ``train/images_per_second`` and ``test0/<output>``, at
step = iteration; ``csv_to_tensorboard`` does it for a CSV or a training log after the fact.
"""

import csv
import datetime
import os
import re
import time

from .atomic import atomic_path
from .errors import ConfnetError

COLUMNS = ["iteration", "seconds", "lr", "train_loss"]


def column_name(index, name, k=None):
    return f"test{index}/{name}" + (f"[{k}]" if k is not None else "")


def value_columns(index, values):
    """Column names and values of one test: ``values`` maps output name -> list of numbers."""
    out = {}
    for name, numbers in values.items():
        if len(numbers) == 1:
            out[column_name(index, name)] = numbers[0]
        else:
            out.update((column_name(index, name, k), v) for k, v in enumerate(numbers))
    return out


def _format(value):
    if value is None or value == "":
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def _row_text(row):
    """A row as CSV text: seconds to the millisecond, values to 6 significant digits."""
    text = {name: _format(v) for name, v in row.items()}
    if row.get("seconds") is not None:
        text["seconds"] = f"{row['seconds']:.3f}"
    return text


class CSVWriter:
    """Appends rows to a metrics CSV, flushing each one, so a crash loses nothing written.

    With ``resume_at`` (the iteration a resumed run starts from), an existing file with the same
    columns keeps its rows before that iteration and the new rows follow, with ``seconds``
    continuing from its last row; otherwise the file starts afresh.
    """

    def __init__(self, path, columns, resume_at=None):
        self.path, self.columns = os.fspath(path), list(columns)
        kept = self._rows_to_keep(resume_at) if resume_at is not None else []
        self.offset = max((float(r["seconds"]) for r in kept if r.get("seconds")), default=0.0)
        folder = os.path.dirname(self.path)
        try:
            if folder:
                os.makedirs(folder, exist_ok=True)
            # The kept rows go to a new file renamed over the old one, so a kill at this moment
            # leaves the old log or the new one, never a truncated one; then rows are appended.
            with atomic_path(self.path) as temp, \
                    open(temp, "w", newline="", encoding="utf-8") as stream:
                writer = self._dict_writer(stream)
                writer.writeheader()
                writer.writerows(kept)
            self._stream = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise ConfnetError(f"{self.path}: cannot write the metrics log: "
                               f"{error.strerror}") from None
        self._writer = self._dict_writer(self._stream)

    def _dict_writer(self, stream):
        return csv.DictWriter(stream, self.columns, restval="", extrasaction="ignore")

    def _rows_to_keep(self, resume_at):
        try:
            columns, rows = read_csv(self.path)
        except ConfnetError:
            return []
        if columns != self.columns:
            return []
        return [r for r in rows if r["iteration"].isdigit() and int(r["iteration"]) < resume_at]

    def write(self, iteration, seconds, **values):
        """One row: ``values`` maps column name -> number (missing columns stay empty)."""
        self._writer.writerow(_row_text(dict(values, iteration=iteration,
                                             seconds=seconds + self.offset)))
        self._stream.flush()

    def close(self):
        self._stream.close()


# TensorBoard tag of each training column; test columns keep their names ("test0/accuracy").
TENSORBOARD_TAGS = {"train_loss": "train/loss", "lr": "train/lr",
                    "images_per_second": "train/images_per_second"}


def import_tensorboardx(what="--tensorboard"):
    try:
        import tensorboardX
    except ImportError:
        raise ConfnetError(f"{what} needs tensorboardX: pip install 'confnet[tensorboard]'") \
            from None
    return tensorboardX


class TensorBoardWriter:
    """Writes metric rows as TensorBoard scalars into event files in ``logdir`` (view them with
    ``tensorboard --logdir``), with CSVWriter's ``write``: step = iteration, wall time =
    ``start`` + seconds. Empty values are left out."""

    def __init__(self, logdir, start=None):
        tensorboardx = import_tensorboardx()
        try:
            self._writer = tensorboardx.SummaryWriter(os.fspath(logdir))
        except OSError as error:
            raise ConfnetError(f"{logdir}: cannot write TensorBoard logs: "
                               f"{error.strerror}") from None
        self.logdir, self.start = os.fspath(logdir), time.time() if start is None else start

    def write(self, iteration, seconds, **values):
        for name, value in values.items():
            if value is None or value == "":
                continue
            self._writer.add_scalar(TENSORBOARD_TAGS.get(name, name), float(value), iteration,
                                    walltime=self.start + (seconds or 0.0))
        self._writer.flush()   # a row at a time, as the CSV: a crash loses nothing written

    def close(self):
        self._writer.close()


def csv_to_tensorboard(path, logdir):
    """Write the metrics of a metrics CSV, or of a Caffe/confnet training log (any other file),
    as TensorBoard scalars in ``logdir``; returns the number of rows. Wall times end at the
    file's modification time."""
    if path.endswith(".csv"):
        columns, rows = read_csv(path)
    else:
        try:
            with open(path, encoding="utf-8", errors="replace") as stream:
                columns, rows = parse_log(stream, where=path)
        except FileNotFoundError:
            raise ConfnetError(f"{path}: no such file") from None
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds") not in (None, "")]
    writer = TensorBoardWriter(logdir, start=os.path.getmtime(path) - max(seconds, default=0))
    try:
        for row in rows:
            values = {name: row.get(name) for name in columns[2:]}
            writer.write(int(row["iteration"]), float(row.get("seconds") or 0), **values)
    except ValueError as error:
        raise ConfnetError(f"{path}: not a number in a metrics row: {error}") from None
    finally:
        writer.close()
    return len(rows)


def write_csv(path, columns, rows):
    """Write a whole metrics CSV atomically (temp file beside it, then rename)."""
    with atomic_path(path) as temp, open(temp, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow(_row_text(row))


def read_csv(path):
    """(columns, rows as dicts of strings) of a metrics CSV written by confnet."""
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            columns, rows = reader.fieldnames or [], list(reader)
    except FileNotFoundError:
        raise ConfnetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfnetError(f"{path}: cannot read: {error}") from None
    if columns[:len(COLUMNS)] != COLUMNS:
        raise ConfnetError(f"{path}: not a confnet metrics CSV (its first line should start with "
                           f"{','.join(COLUMNS)}); convert a training log with confnet parse-log")
    return columns, rows


# -- parsing training logs ------------------------------------------------------------------------

# glog: "I1121 21:40:02.512345  4242 solver.cpp:228] message"
_GLOG = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d(?:\.\d+)?)\s+\d+ [^\]]*\] ?(.*)$")
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))"
_TRAIN_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = " + _NUMBER)
_LR = re.compile(r"Iteration (\d+), lr = " + _NUMBER)
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = " + _NUMBER)


def parse_log(lines, where="log"):
    """(columns, rows) of the metrics in a Caffe or confnet training log (an iterable of lines).

    Reads Caffe's lines "Iteration N (...), loss = x" (or "Iteration N, loss = x"),
    "Iteration N, lr = y", "Iteration N, Testing net (#k)" and the "Test net output #j: name = v"
    lines after it. ``seconds`` comes from the glog time stamps (empty for lines without one).
    """
    rows, display, tests = [], {}, []
    test, start = None, None
    for line in lines:
        stamp, message = _split_glog(line.rstrip("\n"))
        if stamp is not None and start is None:
            start = stamp
        seconds = _seconds_between(start, stamp)
        if match := _TEST_OUTPUT.search(message):
            if test is not None:
                test["values"].setdefault(match[1], []).append(_number(match[2]))
            continue
        if match := _TESTING.search(message):
            test = {"iteration": int(match[1]), "seconds": seconds, "index": int(match[2]),
                    "values": {}}
            tests.append(test)
            rows.append(test)
        elif match := _TRAIN_LOSS.search(message):
            row = _display_row(display, rows, int(match[1]), seconds)
            row["train_loss"] = _number(match[2])
        elif match := _LR.search(message):
            _display_row(display, rows, int(match[1]), seconds)["lr"] = _number(match[2])
    if not rows:
        raise ConfnetError(f"{where}: no training lines found (\"Iteration N, loss = x\" or "
                           "\"Iteration N, Testing net (#k)\"); is it a Caffe or confnet log?")
    return _columns_and_rows(rows, tests)


def _display_row(display, rows, iteration, seconds):
    if iteration not in display:
        display[iteration] = {"iteration": iteration, "seconds": seconds}
        rows.append(display[iteration])
    return display[iteration]


def _columns_and_rows(rows, tests):
    columns = list(COLUMNS)
    for test in tests:
        values = value_columns(test["index"], test["values"])
        test.update(values)
        columns += [name for name in values if name not in columns]
    out = []
    for row in rows:
        out.append({k: v for k, v in row.items() if k in columns})
    return columns, out


def _split_glog(line):
    match = _GLOG.match(line)
    if not match:
        return None, line
    month, day, hour, minute, second = match.groups()[:5]
    stamp = (int(month), int(day), int(hour) * 3600 + int(minute) * 60 + float(second))
    return stamp, match[6]


def _seconds_between(start, stamp):
    """Seconds from glog stamp ``start`` to ``stamp`` (glog writes no year: the month wraps)."""
    if start is None or stamp is None:
        return None
    first = datetime.date(2000, start[0], start[1]).toordinal()
    this = datetime.date(2000, stamp[0], stamp[1]).toordinal() + (366 if stamp[0] < start[0] else 0)
    return (this - first) * 86400 + stamp[2] - start[2]


def _number(text):
    return float(text)
