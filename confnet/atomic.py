"""Output files that appear whole or not at all: write to a temp file beside the target, rename
it over the target when the block succeeds, delete it when the block fails."""

import contextlib
import os
import tempfile

from .errors import ConfnetError


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temp path to write; on success it replaces ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                        suffix=suffix)
    except OSError as error:
        raise ConfnetError(f"{path}: cannot write: {error.strerror}") from None
    os.close(handle)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_umask())   # mkstemp makes it private; a plain file is not
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
