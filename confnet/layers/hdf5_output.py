"""HDF5Output: writes its two bottoms to an HDF5 file as datasets "data" and "label"."""

from .base import Layer
from .hdf5_data import import_h5py
from .registry import register_layer


@register_layer("HDF5Output")
class HDF5Output(Layer):
    """Appends bottom[0] to dataset "data" and bottom[1] to dataset "label" of
    hdf5_output_param.file_name, which setup creates (replacing an existing file).

    bottom[0], bottom[1]: the same number N of rows, at most 4 axes each; stored in Caffe's
    legacy 4-D shape (N, C, H, W), missing axes as 1 (a (N,) label becomes (N, 1, 1, 1)).
    No top, no backward. Caffe writes one batch only (its second forward fails); here every
    forward adds its rows, so the file holds all batches seen.

    In a device run it stays on the host (writing a file is host work): the base class's
    fallback logs that once, and each bottom is read through ``cpu_data``, so one device -> host
    copy per bottom and batch, and the bottoms stay valid on the device (no copy back).
    """

    params = ("hdf5_output_param",)
    host_only = True   # file output / user code: the host by design
    num_bottom = 2
    num_top = 0

    def layer_setup(self, bottom, top):
        self.h5py = import_h5py(self)
        self.file_name = self.param.hdf5_output_param.file_name
        self.require(self.file_name, "hdf5_output_param.file_name is not set")
        self._open("w").close()

    def reshape(self, bottom, top):
        self.require(bottom[0].shape[:1] == bottom[1].shape[:1] and bottom[0].num_axes > 0,
                     f"data and label need the same number of rows; got {bottom[0].shape} and "
                     f"{bottom[1].shape}")
        for blob in bottom:
            self.require(blob.num_axes <= 4,
                         f"can write blobs of at most 4 axes, got {blob.shape}")

    def forward_cpu(self, bottom, top):
        with self._open("a") as f:
            for name, blob in zip(("data", "label"), bottom):
                rows = blob.cpu_data.reshape(blob.shape + (1,) * (4 - blob.num_axes))
                if name not in f:
                    f.create_dataset(name, shape=(0,) + rows.shape[1:], dtype=rows.dtype,
                                     maxshape=(None,) + rows.shape[1:], chunks=True)
                dataset = f[name]
                self.require(dataset.shape[1:] == rows.shape[1:],
                             f"'{self.file_name}': dataset '{name}' holds rows of shape "
                             f"{dataset.shape[1:]}, this batch {rows.shape[1:]}")
                start = dataset.shape[0]
                dataset.resize(start + len(rows), axis=0)
                dataset[start:] = rows

    def _open(self, mode):
        try:
            return self.h5py.File(self.file_name, mode)
        except OSError as e:
            self.fail(f"cannot write HDF5 file '{self.file_name}': {e}")
