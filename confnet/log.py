"""Logging in glog's line format, so tools written for Caffe's logs read confnet's too:

    I1121 20:53:35.123456  4242 solver.py:120] Iteration 100, loss = 0.25
"""

import logging
import os
import sys
import time

_LEVELS = {"DEBUG": "I", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "F"}


class GlogFormatter(logging.Formatter):
    def format(self, record):
        t = time.localtime(record.created)
        micros = int((record.created % 1) * 1e6)
        head = (f"{_LEVELS.get(record.levelname, 'I')}{t.tm_mon:02d}{t.tm_mday:02d} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d} "
                f"{os.getpid():5d} {record.filename}:{record.lineno}] ")
        return head + record.getMessage()


def setup(level=logging.INFO, stream=None):
    """Send confnet's log to ``stream`` (stderr by default) in glog's format."""
    logger = logging.getLogger("confnet")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(GlogFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
