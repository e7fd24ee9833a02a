"""What every Elementwise layer (confnet/layers/elementwise.py) shares; each type's own tests
are in test_<type>.py."""

import numpy as np

from tests.layers.harness import RNG, make_blobs, make_layer, run_forward


def test_float32_stays_float32():
    for text in ['type: "ELU"', 'type: "Power" power_param { power: 2 }', 'type: "Swish"',
                 'type: "Exp"', 'type: "Clip" clip_param { min: 0 max: 1 }']:
        layer = make_layer(text, dtype=np.float32)
        bottom = make_blobs([RNG.uniform(0.1, 1, size=(2, 3))], np.float32)
        top = make_blobs([0], np.float32)
        layer.setup(bottom, top)
        run_forward(layer, bottom, top)
        top[0].diff[...] = 1
        layer.backward(top, [True], bottom)
        assert top[0].data.dtype == bottom[0].diff.dtype == np.float32, text
