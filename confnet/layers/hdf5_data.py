"""HDF5Data: rows of the datasets of HDF5 files, one top per dataset (needs h5py)."""

import json
import os

import numpy as np

from .. import rng
from .base import Layer
from .registry import register_layer


def import_h5py(layer):
    """The h5py module, or a one-line error naming `layer` when it is not installed."""
    try:
        import h5py
    except ImportError:
        layer.fail(f"{layer.type_name} needs h5py: pip install confnet[hdf5]")
    return h5py


@register_layer("HDF5Data")
class HDF5Data(Layer):
    """top[j][i] = dataset_j[row] of the current file, for the next batch_size rows.

    hdf5_data_param.source is a text file naming HDF5 files (whitespace-separated, relative to
    the working directory as in Caffe). Each top reads the dataset of the same name; all of a
    file's datasets have the same number of rows (first axis). Files are read whole, one at a
    time, in the listed order; after the last row of the last file reading starts over. With
    ``shuffle`` the file order is drawn anew before each pass over the files and the row order
    each time a file is (re)started.

    top[j]: (batch_size, *dataset_j.shape[1:]), converted to the net's float type.
    No transformation (transform_param is refused) and no backward. A batch is gathered on the
    host (it may span files); on the device each top then gets one host -> device copy.
    """

    params = ("hdf5_data_param",)
    num_bottom = 0
    min_top = 1
    has_gpu = True   # forward_gpu: one host -> device copy per top; no kernels

    def layer_setup(self, bottom, top):
        self.h5py = import_h5py(self)
        p = self.param.hdf5_data_param
        self.require(p.batch_size > 0, "hdf5_data_param.batch_size must be positive")
        self.require(p.source, "hdf5_data_param.source (a list of HDF5 files) is not set")
        self.require(os.path.isfile(p.source), f"HDF5 file list '{p.source}' not found")
        with open(p.source, encoding="utf-8") as f:
            self.files = f.read().split()
        self.require(self.files, f"HDF5 file list '{p.source}' names no files")
        self.batch_size, self.shuffle = p.batch_size, p.shuffle
        self.names = list(self.param.top)
        self.rng = rng.derive()
        count = len(self.files)
        self.file_order = self.rng.permutation(count) if self.shuffle else np.arange(count)
        self.file_index = 0
        self.row_shape = None
        self._load()
        self.row_shape = [a.shape[1:] for a in self.arrays]
        self._start_rows()
        self.batch = [np.empty((self.batch_size, *shape), self.dtype) for shape in self.row_shape]
        for blob, rows in zip(top, self.batch):
            blob.reshape(rows.shape)

    def reshape(self, bottom, top):
        """Shapes are fixed by batch_size and the datasets."""

    def forward_cpu(self, bottom, top):
        filled = 0
        while filled < self.batch_size:
            rows_left = len(self.arrays[0]) - self.row
            take = min(self.batch_size - filled, rows_left)
            rows = (slice(self.row, self.row + take) if self.row_order is None
                    else self.row_order[self.row:self.row + take])
            for batch, array in zip(self.batch, self.arrays):
                batch[filled:filled + take] = array[rows]
            filled += take
            self.row += take
            if self.row == len(self.arrays[0]):
                self._next_file()
        for blob, batch in zip(top, self.batch):
            blob.set_data(batch)   # host: a copy into the top; device: one host -> device copy

    forward_gpu = forward_cpu

    def _next_file(self):
        """After a file's last row, as Caffe: the next file (a new order after the last one),
        or the same file again when there is only one; then new row order."""
        if len(self.files) > 1:
            self.file_index += 1
            if self.file_index == len(self.files):
                self.file_index = 0
                if self.shuffle:
                    self.file_order = self.rng.permutation(len(self.files))
            self._load()
        self._start_rows()

    def _start_rows(self):
        self.row = 0
        # The generator's state before a row order is drawn is what a snapshot keeps: drawing
        # again from it gives the same order and leaves the generator where it was.
        self.rows_rng_state = self.rng.bit_generator.state
        self.row_order = self.rng.permutation(len(self.arrays[0])) if self.shuffle else None

    def _load(self):
        path = self.files[self.file_order[self.file_index]]
        self.require(os.path.isfile(path), f"HDF5 file '{path}' (listed in "
                                           f"'{self.param.hdf5_data_param.source}') not found")
        try:
            with self.h5py.File(path, "r") as f:
                self.arrays = [self._dataset(f, path, name) for name in self.names]
        except OSError as e:
            self.fail(f"cannot read HDF5 file '{path}': {e}")
        rows = {len(a) for a in self.arrays}
        self.require(len(rows) == 1 and rows != {0},
                     f"HDF5 file '{path}': datasets {', '.join(self.names)} need the same, "
                     f"non-zero number of rows; they have {[len(a) for a in self.arrays]}")
        if self.row_shape is not None:
            shapes = [a.shape[1:] for a in self.arrays]
            self.require(shapes == self.row_shape,
                         f"HDF5 file '{path}': rows of shape {shapes}, but the first file's "
                         f"are {self.row_shape}")

    def _dataset(self, f, path, name):
        dataset = f.get(name)
        if not isinstance(dataset, self.h5py.Dataset):
            self.fail(f"HDF5 file '{path}' has no dataset '{name}' (a top is read from the "
                      f"dataset of its name; the file has: {', '.join(sorted(f.keys()))})")
        if dataset.ndim < 1 or dataset.dtype.kind not in "fiub":
            self.fail(f"HDF5 file '{path}': dataset '{name}' must hold numbers in at least one "
                      f"axis; it is {dataset.dtype} of shape {dataset.shape}")
        return np.asarray(dataset[()], dtype=self.dtype)

    def cursor_state(self):
        state = {"file_order": [int(i) for i in self.file_order], "file": self.file_index,
                 "rows_rng": self.rows_rng_state}
        return self.row, json.dumps(state)

    def restore_cursor(self, position, rng_state):
        state = json.loads(rng_state)
        order = np.asarray(state["file_order"], dtype=np.int64)
        self.require(len(order) == len(self.files) and 0 <= state["file"] < len(order),
                     f"the snapshot read {len(order)} HDF5 file(s), the source lists "
                     f"{len(self.files)}; was it changed since?")
        self.file_order, self.file_index = order, int(state["file"])
        self._load()
        self.rng.bit_generator.state = state["rows_rng"]
        self._start_rows()
        self.require(position < len(self.arrays[0]),
                     f"the snapshot's row {position} is past the end of the file; was it "
                     "changed since?")
        self.row = int(position)
