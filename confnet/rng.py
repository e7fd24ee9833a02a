"""The random number generator every random choice in confnet draws from.

One numpy Generator per process, seeded by the solver's ``random_seed`` (or ``--seed``), so that a
seeded run repeats exactly. Fillers and Dropout use it; data layers derive their own generators
from it so that prefetching in a thread does not change the main sequence.
"""

import json

import numpy as np

_generator = np.random.default_rng()


def seed(value):
    global _generator
    _generator = np.random.default_rng(None if value is None or value < 0 else int(value))


def get():
    return _generator


def derive():
    """A new independent Generator seeded from the global one (for a data layer, say)."""
    return np.random.default_rng(int(_generator.integers(2**63)))


def fork(index):
    """Replace the generator by stream ``index`` of a family drawn from it, so that the ranks of
    a data-parallel run draw different dropout masks, each repeatably."""
    global _generator
    _generator = np.random.default_rng([int(_generator.integers(2**63)), int(index)])


def get_state(generator=None):
    """The generator's state as a JSON string (stored in snapshots)."""
    return json.dumps((generator or _generator).bit_generator.state)


def set_state(text, generator=None):
    (generator or _generator).bit_generator.state = json.loads(text)
