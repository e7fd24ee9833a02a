"""Caffe's HDF5 files: weights (``.caffemodel.h5``) and solver state (``.solverstate.h5``).

The layout is the one Caffe's Net::ToHDF5 and SGDSolver::SnapshotSolverStateToHDF5 write, so
either tool reads the other's files:

    weights        /data/<layer>/<i>     float32, parameter i of the layer, in its own shape
                                         (a parameter shared with an earlier layer is left out)
                   /diff/<layer>/<i>     the gradients, only with ``snapshot_diff``
    solver state   /iter, /current_step  int32, one element
                   /learned_net          string (the weights file)
                   /history/<i>          float32, optimizer history blob i
                   /rng_state, /data_cursor/<k>/{layer, position, rng_state}
                                         confnet's RNG and data-reader positions (Caffe
                                         ignores them), as in a binary .solverstate

Both are read into and written from the protobuf messages (NetParameter blobs, SolverState),
so the rest of confnet handles one kind of weights and one kind of state. h5py is an optional
extra, imported on first use.
"""

import numpy as np

from confnet.atomic import atomic_path
from confnet.errors import ConfnetError
from confnet.proto import confnet_pb2 as pb
from confnet.proto import io


def is_hdf5(path):
    """Caffe's rule: a weights or state file is HDF5 when its name ends in .h5."""
    return str(path).endswith(".h5")


def import_h5py(what):
    """The h5py module, or a one-line error saying that `what` needs it."""
    try:
        import h5py
    except ImportError:
        raise ConfnetError(f"{what} needs h5py: pip install confnet[hdf5]") from None
    return h5py


def _open(path, mode):
    h5py = import_h5py(f"{path}: an HDF5 file")
    try:
        return h5py.File(path, mode)
    except FileNotFoundError:
        raise ConfnetError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfnetError(f"{path}: not a readable HDF5 file ({error})") from None


# -- weights ---------------------------------------------------------------------------------


def write_weights(path, layers, write_diff=False):
    """Write Caffe's HDF5 weights, atomically. `layers`: (name, [(blob, owned)]) per layer;
    data is written for the parameters a layer owns (not shared ones), diffs for all."""
    import_h5py(f"{path}: an HDF5 weights file")
    with atomic_path(path) as temp, _open(temp, "w") as h5:
        data = h5.create_group("data")
        diff = h5.create_group("diff") if write_diff else None
        for name, params in layers:
            data_group = data.require_group(name)
            diff_group = diff.require_group(name) if write_diff else None
            for index, (blob, owned) in enumerate(params):
                if owned:
                    data_group.create_dataset(str(index), data=_float32(blob.data))
                if write_diff:
                    diff_group.create_dataset(str(index), data=_float32(blob.diff))


def _float32(array):
    return np.asarray(array, dtype=np.float32)


def read_weights(path):
    """The weights in an HDF5 file: a list of (layer name, {index: float32 array})."""
    with _open(path, "r") as h5:
        if "data" not in h5:
            raise ConfnetError(f"{path}: no 'data' group; not HDF5 weights written by Caffe "
                               "or confnet")
        layers = {}
        # Layer names may contain '/', which HDF5 turns into nested groups: collect datasets.
        def collect(name, item):
            if hasattr(item, "shape"):
                layer, _, index = name.rpartition("/")
                if not index.isdigit():
                    raise ConfnetError(f"{path}: unexpected dataset 'data/{name}'")
                layers.setdefault(layer, {})[int(index)] = np.asarray(item, dtype=np.float32)
        h5["data"].visititems(collect)
    return list(layers.items())


# -- solver state ----------------------------------------------------------------------------


def write_solver_state(state, path):
    """Write a SolverState message in Caffe's HDF5 layout, atomically."""
    import_h5py(f"{path}: an HDF5 solver state")
    with atomic_path(path) as temp, _open(temp, "w") as h5:
        _write_int(h5, "iter", state.iter)
        _write_string(h5, "learned_net", state.learned_net)
        _write_int(h5, "current_step", state.current_step)
        history = h5.create_group("history")
        for i, blob in enumerate(state.history):
            history.create_dataset(str(i), data=io.blob_to_array(blob))
        if state.rng_state:
            _write_string(h5, "rng_state", state.rng_state)
        cursors = h5.create_group("data_cursor")
        for i, cursor in enumerate(state.data_cursor):
            group = cursors.create_group(str(i))
            _write_string(group, "layer", cursor.layer)
            group.create_dataset("position", data=np.array([cursor.position], np.uint64))
            _write_string(group, "rng_state", cursor.rng_state)


def read_solver_state(path):
    """A SolverState message from an HDF5 solver state (Caffe's, or confnet's with extras)."""
    state = pb.SolverState()
    with _open(path, "r") as h5:
        try:
            state.iter = _read_int(h5["iter"])
            state.current_step = _read_int(h5["current_step"])
            history = h5["history"]
        except KeyError as error:
            raise ConfnetError(f"{path}: not an HDF5 solver state ({error})") from None
        if "learned_net" in h5:
            state.learned_net = _read_string(h5["learned_net"])
        for i in range(len(history)):
            io.array_to_blob(np.asarray(history[str(i)], np.float32), out=state.history.add())
        if "rng_state" in h5:
            state.rng_state = _read_string(h5["rng_state"])
        for i in range(len(h5.get("data_cursor", ()))):
            group = h5["data_cursor"][str(i)]
            state.data_cursor.add(layer=_read_string(group["layer"]),
                                  position=_read_int(group["position"]),
                                  rng_state=_read_string(group["rng_state"]))
    return state


def _write_int(group, name, value):
    """A one-element int32 dataset, as Caffe's hdf5_save_int."""
    group.create_dataset(name, data=np.array([value], np.int32))


def _read_int(dataset):
    return int(np.asarray(dataset).reshape(-1)[0])


def _write_string(group, name, text):
    """A scalar NUL-terminated fixed-length string, as H5LTmake_dataset_string (Caffe)."""
    import h5py
    raw = text.encode("utf-8") + b"\0"
    kind = h5py.h5t.C_S1.copy()
    kind.set_size(len(raw))
    dataset = h5py.h5d.create(group.id, name.encode("utf-8"), kind,
                              h5py.h5s.create(h5py.h5s.SCALAR))
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(raw, dtype=f"S{len(raw)}"))


def _read_string(dataset):
    value = dataset[()]
    if isinstance(value, bytes):
        value = value.split(b"\0", 1)[0].decode("utf-8")
    return str(value)
