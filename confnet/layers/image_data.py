"""ImageData: batches of image files named in a list file, transformed as the Data layer's are.

The list file (image_data_param.source) holds one ``path label`` line per image; each path is
``root_folder + path`` (plain concatenation, as in Caffe, so a relative path is relative to the
working directory unless root_folder says otherwise).
"""

import os
from functools import partial

import numpy as np

from .. import rng
from ..data.convert import load_image, read_list_file
from ..data.prefetch import BatchPrefetcher
from ..data.transformer import DataTransformer
from ..errors import ConfnetError
from .prefetching import PrefetchingLayer
from .registry import register_layer


@register_layer("ImageData")
class ImageData(PrefetchingLayer):
    """top[0] = transform(image), top[1] = label, for the next batch_size lines of the list.

    Each image is read as 3 BGR channels (1 grey channel when is_color is false) and resized to
    new_height x new_width when both are set, then transform_param applies as in the Data layer:

        top[0][n, c, h, w] = (x[c, h_off + h, w_off + w'] - mean) * scale   (w' mirrored or not)

    top[0]: (batch_size, C, H', W').   top[1]: (batch_size,) labels.   No backward.

    The list is read in order and starts over at its end; with ``shuffle`` it is put in a new
    random order before the first pass and before every later one. ``rand_skip`` skips a random
    number in [0, rand_skip) of lines at the start. Batches are prepared ahead in a thread; the
    read position, the shuffle seed and the transformer's random state are what ``cursor_state``
    saves, so a resumed run sees the same batches.
    """

    params = ("image_data_param", "transform_param")
    num_top = 2

    def layer_setup(self, bottom, top):
        p = self.param.image_data_param
        self._check_param(p)
        self.require(os.path.isfile(p.source),
                     f"list file '{p.source}' (image_data_param.source) not found")
        try:
            items = read_list_file(p.source, root="")
        except ConfnetError as e:
            self.fail(str(e))
        entries = [(p.root_folder + rel_path, label) for rel_path, _, label in items]
        layer_rng = rng.derive()
        seed = int(layer_rng.integers(2**63)) if p.shuffle else None
        self.reader = _ImageList(p.source, entries, seed)
        if p.rand_skip:
            skip = int(layer_rng.integers(p.rand_skip))
            self.require(skip < len(entries),
                         f"rand_skip drew {skip}, but the list has only {len(entries)} images")
            self.reader.position = skip
        transformer = DataTransformer(self.param.transform_param, self.phase, layer_rng)
        decode = partial(_read_image, height=p.new_height, width=p.new_width,
                         gray=not p.is_color)
        self.start_prefetch(BatchPrefetcher(self.reader, p.batch_size, decode_fn=decode,
                                            transformer=transformer), top)

    def _check_param(self, p):
        self.require(p.batch_size > 0, "image_data_param.batch_size must be positive")
        self.require(p.source, "image_data_param.source (the list file) is not set")
        self.require((p.new_height == 0) == (p.new_width == 0),
                     "set both new_height and new_width, or neither")
        self.require(not (p.HasField("scale") or p.HasField("mean_file")
                          or p.HasField("crop_size") or p.HasField("mirror")),
                     "image_data_param's old transformation fields (scale, mean_file, "
                     "crop_size, mirror) belong in transform_param")
        t = self.param.transform_param
        self.require(not (t.force_color or t.force_gray),
                     "transform_param.force_color/force_gray apply to encoded Datums; an "
                     "ImageData layer reads colour or grey as image_data_param.is_color says")

    def extra_state(self):
        return {"shuffle_seed": self.reader.seed}

    def restore_extra_state(self, saved):
        # Batches the thread makes before restore() stops it are dropped, so the seed may change
        # under it.
        self.reader.seed = saved["shuffle_seed"]


class _ImageList:
    """The entries of a list file as a cycling reader for BatchPrefetcher.

    ``position`` counts entries read since the start (pass * len + index), so it says which
    pass (and so which shuffled order) the next entry comes from. The order of pass k is a
    permutation drawn from (seed, k), or the file's order when seed is None.
    """

    def __init__(self, path, entries, seed):
        self.path = path
        self.entries = entries
        self.seed = seed
        self.position = 0
        self._order_of = (None, None)

    def read_batch(self, n):
        batch = []
        for position in range(self.position, self.position + n):
            epoch, index = divmod(position, len(self.entries))
            batch.append(self.entries[self._order(epoch)[index]])
        self.position += n
        return batch

    def _order(self, epoch):
        if self._order_of[0] != (self.seed, epoch):
            order = (np.arange(len(self.entries)) if self.seed is None else
                     np.random.default_rng([self.seed, epoch]).permutation(len(self.entries)))
            self._order_of = ((self.seed, epoch), order)
        return self._order_of[1]


def _read_image(entry, height, width, gray):
    path, label = entry
    try:
        return load_image(path, height, width, gray), label
    except OSError as e:
        raise ConfnetError(f"cannot read image '{path}': {e.strerror or e}") from e
