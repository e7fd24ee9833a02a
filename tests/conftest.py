"""Fixtures shared by the test folders."""

import numpy as np
import pytest

from confnet.data.datum import array_to_datum, datum_key
from confnet.data.lmdb_io import LMDBWriter


def write_digit_like_lmdb(path, n=60, classes=3, size=8, seed=0):
    """A small LMDB of uint8 1 x size x size images whose class shows as a bright row."""
    g = np.random.default_rng(seed)
    with LMDBWriter(str(path)) as db:
        for i in range(n):
            label = i % classes
            img = g.integers(0, 60, (1, size, size), dtype=np.uint8)
            img[0, 2 * label + 1, :] = 250
            db.put(datum_key(i, f"img{i}.png"), array_to_datum(img, label).SerializeToString())
    return str(path)


@pytest.fixture
def tiny_lmdb(tmp_path):
    return write_digit_like_lmdb(tmp_path / "train_lmdb")


@pytest.fixture(autouse=True)
def _restore_confnet_logger():
    """The CLI points the 'confnet' logger at its own handler and stops propagation; put it back
    after each test so that caplog sees later tests' records."""
    import logging
    logger = logging.getLogger("confnet")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved


@pytest.fixture(autouse=True)
def _back_on_the_cpu():
    """A test (or a command it runs) that selects a device must not leave later tests on it, nor
    TF32 products (a GPU solver turns them on from allow_tf32) for later float32 comparisons."""
    yield
    from confnet import gpu
    from confnet.gpu import blas
    gpu.use(None)
    blas.set_tf32(False)
