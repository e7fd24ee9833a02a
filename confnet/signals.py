"""SIGINT (Ctrl-C), SIGTERM (what ``kill`` and job schedulers send) and SIGHUP while training, as
Caffe's ``--sigint_effect`` and ``--sighup_effect`` (and ``--sigterm-effect``):

    stop      finish the current iteration, write a snapshot, stop
    snapshot  write a snapshot after the current iteration and go on
    none      ignore the signal

A SIGINT or SIGTERM that arrives while an earlier request is still waiting to be acted on
aborts at once (KeyboardInterrupt), without a snapshot.

Outside training (``convert-data``), ``terminate_interrupts`` turns SIGTERM into ``Terminated``,
a KeyboardInterrupt, so the clean-up a Ctrl-C runs (partial output removed, worker processes
stopped) runs for a ``kill`` too.
"""

import contextlib
import logging
import signal
import threading

log = logging.getLogger("confnet")

EFFECTS = ("stop", "snapshot", "none")


@contextlib.contextmanager
def handle_signals(solver, sigint="stop", sighup="snapshot", sigterm="stop"):
    """Route SIGINT/SIGTERM/SIGHUP to ``solver.requested_stop``/``requested_snapshot`` inside
    the block.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    for effect in (sigint, sighup, sigterm):
        if effect not in EFFECTS:
            raise ValueError(f"signal effect must be one of {EFFECTS}, not {effect!r}")
    signals = {signal.SIGINT: sigint, signal.SIGTERM: sigterm}
    if hasattr(signal, "SIGHUP"):
        signals[signal.SIGHUP] = sighup
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        pending = solver.requested_stop or solver.requested_snapshot
        if signum in (signal.SIGINT, signal.SIGTERM) and pending:
            raise KeyboardInterrupt
        effect = signals[signum]
        if effect == "stop":
            log.info("%s received: stopping after the current iteration, with a snapshot (send "
                     "%s again to abort at once)", name, name)
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


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop at once, cleaning up as for Ctrl-C."""


@contextlib.contextmanager
def terminate_interrupts():
    """Inside the block, SIGTERM raises Terminated in the main thread (elsewhere: no effect)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum, _frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_sigterm():
    """For worker processes forked inside ``terminate_interrupts``: SIGTERM ends them plainly."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
