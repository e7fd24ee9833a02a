"""The mean image of an LMDB of Datums, as Caffe's compute_image_mean computes it."""

import numpy as np

from confnet.data.datum import decode_datum
from confnet.data.lmdb_io import LMDBReader
from confnet.errors import ConfnetError
from confnet.proto.io import write_binaryproto


def compute_mean(db):
    """Mean over all datums of `db` as a float32 (C, H, W) array (encoded ones are decoded)."""
    with LMDBReader(db) as reader:
        total, count = None, 0
        for key, value in reader.items():
            try:
                image, _ = decode_datum(value)
            except ConfnetError as e:
                raise ConfnetError(f"LMDB '{reader.path}', entry "
                                   f"{key.decode(errors='replace')}: {e}") from None
            if total is None:
                total = np.zeros(image.shape, dtype=np.float64)
            elif image.shape != total.shape:
                raise ConfnetError(f"LMDB '{reader.path}': entry {key.decode(errors='replace')} "
                                   f"has shape {image.shape}, the first {total.shape}; a mean "
                                   "needs images of one size (convert with resize)")
            total += image
            count += 1
    return (total / count).astype(np.float32)


def save_mean(mean, path):
    """Writes a (C, H, W) mean as a (1, C, H, W) .binaryproto, the shape Caffe's Data layer reads.

    (Caffe asks a mean blob for its channels/height/width by legacy 4-d position, so a 3-d blob
    would be misread.)
    """
    mean = np.asarray(mean, dtype=np.float32)
    write_binaryproto(mean[np.newaxis] if mean.ndim == 3 else mean, path)
