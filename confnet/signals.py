"""SIGINT (Ctrl-C) and SIGHUP while training, as Caffe's ``--sigint_effect`` and
``--sighup_effect``:

    stop      finish the current iteration, write a snapshot, stop
    snapshot  write a snapshot after the current iteration and go on
    none      ignore the signal

A SIGINT that arrives while an earlier request is still waiting to be acted on aborts at once
(KeyboardInterrupt), without a snapshot.
"""

import contextlib
import logging
import signal
import threading

log = logging.getLogger("confnet")

EFFECTS = ("stop", "snapshot", "none")


@contextlib.contextmanager
def handle_signals(solver, sigint="stop", sighup="snapshot"):
    """Route SIGINT/SIGHUP to ``solver.requested_stop``/``requested_snapshot`` inside the block.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    for effect in (sigint, sighup):
        if effect not in EFFECTS:
            raise ValueError(f"signal effect must be one of {EFFECTS}, not {effect!r}")
    signals = {signal.SIGINT: sigint}
    if hasattr(signal, "SIGHUP"):
        signals[signal.SIGHUP] = sighup
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        pending = solver.requested_stop or solver.requested_snapshot
        if signum == signal.SIGINT and pending:
            raise KeyboardInterrupt
        effect = signals[signum]
        if effect == "stop":
            log.info("%s received: stopping after the current iteration, with a snapshot (send "
                     "SIGINT again to abort at once)", name)
            solver.requested_stop = True
        elif effect == "snapshot":
            log.info("%s received: snapshot after the current iteration", name)
            solver.requested_snapshot = True

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
