"""Every loss refuses a gradient for an input no gradient can flow to (labels, targets, the
infogain matrix), with one line naming it, before either the host or the device path runs."""

import numpy as np
import pytest

from confnet.errors import ConfnetError
from tests.layers.harness import make_blobs, make_layer, run_forward

X = np.random.default_rng(0).normal(size=(3, 4))
LABELS = np.array([0, 2, 1])
CASES = [
    ('type: "SoftmaxWithLoss"', [X, LABELS], 1, "labels"),
    ('type: "MultinomialLogisticLoss"', [np.full((3, 4), 0.25), LABELS], 1, "labels"),
    ('type: "HingeLoss"', [X, LABELS], 1, "labels"),
    ('type: "InfogainLoss"', [X, LABELS, np.eye(4)], 1, "labels"),
    ('type: "InfogainLoss"', [X, LABELS, np.eye(4)], 2, "infogain matrix"),
    ('type: "SigmoidCrossEntropyLoss"', [X, (X > 0).astype(float)], 1, "targets"),
]


@pytest.mark.parametrize("text, inputs, index, name", CASES)
def test_no_gradient_for_labels(text, inputs, index, name):
    layer = make_layer(text)
    bottom = make_blobs(inputs)
    top = make_blobs([0.0])
    layer.setup(bottom, top)
    run_forward(layer, bottom, top)
    wanted = [i in (0, index) for i in range(len(bottom))]
    with pytest.raises(ConfnetError, match=rf"cannot back-propagate to the {name} "
                                           rf"\(bottom\[{index}\]\)"):
        layer.backward(top, wanted, bottom)
