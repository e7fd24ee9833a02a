"""What a loss is divided by: LossParameter.normalization, for the losses that honour it
(SigmoidCrossEntropyLoss, InfogainLoss)."""

from ..proto import confnet_pb2 as pb

FULL = pb.LossParameter.FULL
VALID = pb.LossParameter.VALID
BATCH_SIZE = pb.LossParameter.BATCH_SIZE
NONE = pb.LossParameter.NONE


def normalization_mode(loss_param, default):
    """``normalization`` when it is set; else the legacy ``normalize`` (true: VALID, false:
    BATCH_SIZE); else ``default`` (each Caffe loss has its own)."""
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    if loss_param.HasField("normalize"):
        return VALID if loss_param.normalize else BATCH_SIZE
    return default


def normalizer(mode, outer, inner, valid):
    """The divisor for ``outer`` x ``inner`` targets of which ``valid`` count: FULL outer*inner,
    VALID valid, BATCH_SIZE outer, NONE 1; never below 1 (every target may be ignored)."""
    n = {FULL: outer * inner, VALID: valid, BATCH_SIZE: outer, NONE: 1}[mode]
    return max(1.0, float(n))
