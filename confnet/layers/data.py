"""Data: batches of Datum records read from an LMDB (as written by ``confnet convert-data`` or
Caffe's convert_imageset), transformed, and prepared ahead in a background thread.

    top[0]: (batch_size, C, H', W') float, (x - mean) * scale after crop and mirror
    top[1]: (batch_size,) labels (optional)

The database is read in key order and starts over at its end. ``rand_skip`` skips a random
number of records in [0, rand_skip) at start. The read position and the transformer's random
state are saved in snapshots (``cursor_state``) so a resumed run sees the same batches.
"""

from .. import rng
from ..data.datum import decode_datum
from ..data.lmdb_io import LMDBReader
from ..data.prefetch import BatchPrefetcher
from ..data.transformer import DataTransformer
from ..errors import ConfnetError
from ..proto import confnet_pb2 as pb
from .prefetching import PrefetchingLayer
from .registry import register_layer


@register_layer("Data")
class Data(PrefetchingLayer):
    params = ("data_param", "transform_param")

    def layer_setup(self, bottom, top):
        dp = self.param.data_param
        # Caffe's default backend is LEVELDB; confnet reads LMDB unless LEVELDB is asked for.
        self.require(not (dp.HasField("backend") and dp.backend == pb.DataParameter.LEVELDB),
                     "backend LEVELDB is not supported; convert the data to LMDB "
                     "(confnet convert-data)")
        self.require(dp.source, "data_param.source is not set")
        self.require(dp.batch_size > 0, "data_param.batch_size must be positive")
        self.require(not dp.HasField("mean_file") and not dp.HasField("scale")
                     and not dp.HasField("crop_size") and not dp.HasField("mirror"),
                     "data_param's old transformation fields (scale, mean_file, crop_size, "
                     "mirror) belong in transform_param")
        reader = LMDBReader(dp.source)
        layer_rng = rng.derive()
        if dp.rand_skip:
            reader.position = int(layer_rng.integers(dp.rand_skip)) % max(len(reader), 1)
        transformer = DataTransformer(self.param.transform_param, self.phase, layer_rng)
        prefetch = max(dp.prefetch, 1)
        self.check_memory(dp.batch_size, _item_shape(reader, transformer), prefetch)
        self.start_prefetch(BatchPrefetcher(reader, dp.batch_size, transformer=transformer,
                                            prefetch=prefetch), top)


def _item_shape(reader, transformer):
    """(C, H, W) of the first record after the transformer's crop; None if it cannot be read."""
    first = next(reader.items())[1]
    try:
        image, _ = decode_datum(first, transformer.force_color, transformer.force_gray)
        return transformer.output_shape(image.shape)
    except ConfnetError:
        return None
