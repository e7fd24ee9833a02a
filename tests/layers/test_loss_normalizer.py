import pytest
from google.protobuf import text_format

from confnet.layers import loss_normalizer as ln
from confnet.proto import confnet_pb2 as pb


@pytest.mark.parametrize("text, default, want", [
    ("", ln.BATCH_SIZE, ln.BATCH_SIZE),
    ("", ln.VALID, ln.VALID),
    ("normalize: true", ln.BATCH_SIZE, ln.VALID),
    ("normalize: false", ln.VALID, ln.BATCH_SIZE),
    ("normalize: true normalization: NONE", ln.VALID, ln.NONE),
    ("normalization: FULL", ln.BATCH_SIZE, ln.FULL),
])
def test_mode(text, default, want):
    assert ln.normalization_mode(text_format.Parse(text, pb.LossParameter()), default) == want


@pytest.mark.parametrize("mode, want", [(ln.FULL, 12.0), (ln.VALID, 5.0), (ln.BATCH_SIZE, 3.0),
                                        (ln.NONE, 1.0)])
def test_normalizer(mode, want):
    assert ln.normalizer(mode, 3, 4, 5) == want


def test_never_below_one():
    assert ln.normalizer(ln.VALID, 3, 4, 0) == 1.0
