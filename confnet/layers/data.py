"""Data: batches of Datum records read from an LMDB (as written by ``confnet convert-data`` or
Caffe's convert_imageset), transformed, and prepared ahead in a background thread.

    top[0]: (batch_size, C, H', W') float, (x - mean) * scale after crop and mirror
    top[1]: (batch_size,) labels (optional)

The database is read in key order and starts over at its end. ``rand_skip`` skips a random
number of records in [0, rand_skip) at start. The read position and the transformer's random
state are saved in snapshots (``cursor_state``) so a resumed run sees the same batches.
"""

import json

from .. import rng
from ..data.lmdb_io import LMDBReader
from ..data.prefetch import BatchPrefetcher
from ..data.transformer import DataTransformer
from ..proto import confnet_pb2 as pb
from .base import Layer
from .registry import register_layer


@register_layer("Data")
class Data(Layer):
    params = ("data_param", "transform_param")
    num_bottom = 0
    min_top, max_top = 1, 2

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
        self.prefetcher = BatchPrefetcher(reader, dp.batch_size, transformer=transformer,
                                          prefetch=max(dp.prefetch, 1))
        shape = self.prefetcher.batch_shape()
        top[0].reshape(shape)
        if len(top) > 1:
            top[1].reshape(shape[:1])

    def reshape(self, bottom, top):
        """Shapes are fixed by the data; forward reshapes if a batch differs."""

    def forward_cpu(self, bottom, top):
        data, label = self.prefetcher.next_batch()
        top[0].reshape(data.shape)
        top[0].data[...] = data
        if len(top) > 1:
            top[1].reshape(label.shape)
            top[1].data[...] = label

    def cursor_state(self):
        state = self.prefetcher.state()
        return int(state["position"]), json.dumps(state["rng"])

    def restore_cursor(self, position, rng_state):
        self.prefetcher.restore({"position": position, "rng": json.loads(rng_state)})
