"""The solver loop, shared by every optimizer.

One iteration (Caffe's order):

    clear parameter gradients
    test, every test_interval iterations (and at 0 if test_initialization)
    iter_size times: forward + backward (gradients accumulate)
    display the loss averaged over the last average_loss iterations, every display iterations
    apply the update: clip gradients, then per parameter: divide by iter_size, add weight decay
    (L2: decay * w, L1: decay * sign(w)), let the optimizer turn the gradient into the step,
    and subtract the step from the weights
    snapshot, every snapshot iterations

An optimizer subclasses Solver and implements ``compute_update(i, rate)``: it turns
``net.learnable_params[i].diff`` into the step to subtract, using ``self.history`` (the state a
snapshot saves) as it needs.
"""

import contextlib
import logging
import math
import os
import time
from collections import deque

import numpy as np

from .. import metrics, rng
from ..errors import ConfnetError
from ..layers import TEST, TRAIN
from ..net import Net
from ..proto import confnet_pb2 as pb
from ..proto import hdf5, io
from .lr_policy import current_step, learning_rate

log = logging.getLogger("confnet")


class Solver:
    history_per_param = 1   # blobs of optimizer state per learnable parameter

    def __init__(self, param, solver_path=None):
        self.param = param
        self.solver_dir = os.path.dirname(os.path.abspath(solver_path)) if solver_path else None
        self.iter = 0
        self._check_param()
        if param.random_seed >= 0:
            rng.seed(param.random_seed)
        self.net = self._train_net()
        self.test_nets = self._test_nets()
        for test_net in self.test_nets:
            test_net.share_weights_from(self.net)
        # Caffe's layout: blob k of every parameter comes before blob k + 1 of any of them.
        self.history = [np.zeros_like(p.data) for _ in range(self.history_per_param)
                        for p in self.net.learnable_params]
        self.losses = deque(maxlen=max(param.average_loss, 1))
        self.requested_stop = False       # finish the current iteration, then stop
        self.requested_snapshot = False   # snapshot after the current iteration
        self.on_iteration = []   # callbacks f(solver, loss) after each iteration
        self.metrics = None      # a metrics.CSVWriter while solve() runs, opened at its first row
        self.tensorboard = None  # a metrics.TensorBoardWriter, when set, gets the same rows
        self._metrics_spec = None
        self._started = time.monotonic()

    # -- building ------------------------------------------------------------------------------
    def _check_param(self):
        p = self.param
        if p.iter_size < 1:
            raise ConfnetError("solver: iter_size must be at least 1")
        if p.regularization_type not in ("L1", "L2"):
            raise ConfnetError(f"solver: unknown regularization_type '{p.regularization_type}'; "
                               "use L1 or L2")
        if p.snapshot_format == pb.SolverParameter.HDF5:
            hdf5.import_h5py("solver: snapshot_format HDF5")   # fail now, not at the snapshot
        if p.HasField("solver_mode") and p.solver_mode == pb.SolverParameter.GPU:
            log.warning("solver_mode is GPU, but this confnet has no GPU backend yet: "
                        "running on the CPU")

    def resolve(self, path):
        """A path from the solver file: as given, else relative to the solver's folder."""
        if os.path.exists(path) or os.path.isabs(path) or not self.solver_dir:
            return path
        beside = os.path.join(self.solver_dir, path)
        return beside if os.path.exists(beside) else path

    def _train_net(self):
        p = self.param
        sources = [f for f in ("train_net_param", "train_net", "net_param", "net") if p.HasField(f)]
        if len(sources) != 1:
            raise ConfnetError("solver: give exactly one of net, net_param, train_net, "
                               f"train_net_param (found {', '.join(sources) or 'none'})")
        net_param = self._net_param(sources[0])
        state = p.train_state
        log.info("Creating training net from %s", sources[0])
        return Net(net_param, TRAIN, state.level, list(state.stage))

    def _net_param(self, field):
        value = getattr(self.param, field)
        if isinstance(value, str):
            return io.read_net(self.resolve(value))
        copy = pb.NetParameter()
        copy.CopyFrom(value)
        return copy

    def _test_nets(self):
        p = self.param
        specs = [("test_net_param", x) for x in p.test_net_param]
        specs += [("test_net", x) for x in p.test_net]
        general = next((f for f in ("net_param", "net") if p.HasField(f)), None)
        extra = len(p.test_iter) - len(specs)
        if extra < 0 or (extra > 0 and general is None):
            raise ConfnetError(f"solver: {len(p.test_iter)} test_iter value(s) for "
                               f"{len(specs)} test net(s); give one test_iter per test net")
        specs += [(general, None)] * extra
        if p.test_state and len(p.test_state) != len(specs):
            raise ConfnetError("solver: give one test_state per test net, or none")
        nets = []
        for i, (field, value) in enumerate(specs):
            if value is None:
                net_param = self._net_param(field)
            elif isinstance(value, str):
                net_param = io.read_net(self.resolve(value))
            else:
                net_param = pb.NetParameter()
                net_param.CopyFrom(value)
            state = p.test_state[i] if p.test_state else pb.NetState()
            log.info("Creating test net (#%d) from %s", i, field)
            nets.append(Net(net_param, TEST, state.level, list(state.stage)))
        return nets

    # -- the loop ------------------------------------------------------------------------------
    def solve(self, resume_file=None):
        """Train to max_iter (from ``resume_file``'s state if given), writing the metrics CSV
        ``<snapshot_prefix>_log.csv``. ``requested_stop`` ends early, with a snapshot."""
        if resume_file:
            self.restore(resume_file)
        p = self.param
        log.info("Solving %s", self.net.name)
        log.info("Learning Rate Policy: %s", p.lr_policy)
        learning_rate(p, self.iter)   # a bad lr_policy fails now, not at the first update
        self._check_snapshot_folder()
        self._started = time.monotonic()
        self._metrics_spec = self._metrics_columns(resume_at=self.iter if resume_file else None)
        try:
            self._solve()
        finally:
            if self.metrics:
                self.metrics.close()
            self.metrics = self._metrics_spec = None

    def _solve(self):
        p = self.param
        self.step(p.max_iter - self.iter)
        last_snapshot = p.snapshot and self.iter % p.snapshot == 0
        if self.requested_stop and not last_snapshot:
            self._snapshot_on_stop()
        elif p.snapshot_after_train and not last_snapshot:
            self.snapshot()
        if self.requested_stop:
            log.info("Optimization stopped early at iteration %d.", self.iter)
            return
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward_loss()
            log.info("Iteration %d, loss = %g", self.iter, loss)
            self._record(train_loss=loss)
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

    def _check_snapshot_folder(self):
        """Fail now, not at the first snapshot, when snapshot_prefix points where nothing can be
        written."""
        prefix = self.param.snapshot_prefix
        if not prefix:
            return
        folder = os.path.dirname(os.path.abspath(prefix))
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise ConfnetError(f"solver: snapshot_prefix '{prefix}': cannot write in '{folder}'; "
                               "choose a folder you can write to")

    def _snapshot_on_stop(self):
        if self.param.snapshot_prefix:
            self.snapshot()
        else:
            log.warning("Stopping without a snapshot: the solver has no snapshot_prefix")

    def step(self, iters):
        p = self.param
        stop = self.iter + iters
        clock = _Speedometer(self.iter)
        while self.iter < stop and not self.requested_stop:
            self.net.clear_param_diffs()
            if (p.test_interval and self.iter % p.test_interval == 0
                    and (self.iter > 0 or p.test_initialization)):
                with clock.paused():
                    self.test_all()
                if self.requested_stop:
                    break
            loss = sum(self.net.forward_backward() for _ in range(p.iter_size)) / p.iter_size
            if not math.isfinite(loss):
                raise ConfnetError(self._non_finite_message(loss))
            self.losses.append(loss)
            if p.display and self.iter % p.display == 0:
                self._display(sum(self.losses) / len(self.losses), clock.lap(self.iter))
            self.apply_update()
            self.iter += 1
            for callback in self.on_iteration:
                callback(self, loss)
            if (p.snapshot and self.iter % p.snapshot == 0) or self.requested_snapshot:
                self.requested_snapshot = False
                with clock.paused():
                    self.snapshot()
        return sum(self.losses) / len(self.losses) if self.losses else None

    def _non_finite_message(self, loss):
        """Where a nan/inf loss comes from: the first layer, in forward order, whose output is
        not finite (an in-place layer shows as the layer that first wrote its blob)."""
        head = f"iteration {self.iter}: the loss is {loss}"
        hint = f"lower base_lr (now {self.param.base_lr:g}) or set clip_gradients"
        for layer, bottoms, tops in zip(self.net.layers, self.net.bottom_ids, self.net.top_ids):
            bad = [t for t in tops if not np.isfinite(self.net.blobs[t].data).all()]
            if not bad:
                continue
            where = (f"{head}; layer '{layer.name}' ({layer.type_name}) is the first to output "
                     f"non-finite values, in top '{bad[0]}'")
            if not bottoms:
                return f"{where}: the input data holds nan or inf values; check the database"
            if any(not np.isfinite(b.data).all() for b in layer.blobs):
                return f"{where}, and its parameters are not finite: training diverged; {hint}"
            return f"{where} from finite inputs: training diverged or overflowed; {hint}"
        return f"{head}; {hint}"

    def _display(self, smoothed, speed):
        batch = self.batch_size()
        log.info("Iteration %d (%.2f iter/s, %.0f images/s), loss = %g", self.iter, speed,
                 speed * batch * self.param.iter_size, smoothed)
        self._record(lr=learning_rate(self.param, self.iter), train_loss=smoothed,
                     images_per_second=speed * batch * self.param.iter_size if speed else None)
        index = 0
        for name in self.net.outputs:
            blob = self.net.blobs[name]
            weight = self._loss_weight(self.net, name)
            for value in blob.data.reshape(-1):
                suffix = f" (* {weight:g} = {weight * value:g} loss)" if weight else ""
                log.info("    Train net output #%d: %s = %g%s", index, name, value, suffix)
                index += 1

    def batch_size(self):
        for layer, tops in zip(self.net.layers, self.net.top_ids):
            if not layer.param.bottom and tops and self.net.blobs[tops[0]].num_axes:
                return self.net.blobs[tops[0]].shape[0]
        return 0

    @staticmethod
    def _loss_weight(net, blob_name):
        for layer, tops in zip(net.layers, net.top_ids):
            if blob_name in tops:
                return layer.loss_weights[tops.index(blob_name)]
        return 0.0

    # -- testing -------------------------------------------------------------------------------
    def test_all(self):
        return [self.test(i) for i in range(len(self.test_nets))]

    def test(self, index):
        log.info("Iteration %d, Testing net (#%d)", self.iter, index)
        net = self.test_nets[index]
        sums, loss = {}, 0.0
        iters = self.param.test_iter[index]
        for _ in range(iters):
            if self.requested_stop:
                log.info("Test interrupted.")
                return None
            loss += net.forward_loss()
            for name in net.outputs:
                sums[name] = sums.get(name, 0) + net.blobs[name].data.astype(np.float64)
        if self.param.test_compute_loss:
            log.info("Test loss: %g", loss / iters)
        scores, k = {}, 0
        for name, total in sums.items():
            weight = self._loss_weight(net, name)
            for value in (total / iters).reshape(-1):
                suffix = f" (* {weight:g} = {weight * value:g} loss)" if weight else ""
                log.info("    Test net output #%d: %s = %g%s", k, name, value, suffix)
                k += 1
            scores[name] = total / iters
        self._record(**metrics.value_columns(
            index, {name: [float(v) for v in s.reshape(-1)] for name, s in scores.items()}))
        return scores

    # -- the metrics CSV -----------------------------------------------------------------------
    def _metrics_columns(self, resume_at):
        """(path, columns, resume_at) of the metrics CSV, or None without a snapshot_prefix."""
        if not self.param.snapshot_prefix:
            return None
        columns = list(metrics.COLUMNS)
        for i, net in enumerate(self.test_nets):
            sizes = {name: [0.0] * net.blobs[name].count for name in net.outputs}
            columns += list(metrics.value_columns(i, sizes))
        return f"{self.param.snapshot_prefix}_log.csv", columns, resume_at

    def _record(self, **values):
        """A row of the metrics CSV at the current iteration (the file is opened at the first)."""
        if self.metrics is None and self._metrics_spec is not None:
            self.metrics = metrics.CSVWriter(*self._metrics_spec)
            log.info("Writing metrics to %s", self.metrics.path)
        if self.metrics is not None:
            self.metrics.write(self.iter, time.monotonic() - self._started, **values)
        if self.tensorboard is not None:
            self.tensorboard.write(self.iter, time.monotonic() - self._started, **values)

    # -- the update ----------------------------------------------------------------------------
    def apply_update(self):
        rate = learning_rate(self.param, self.iter)
        if self.param.display and self.iter % self.param.display == 0:
            log.info("Iteration %d, lr = %g", self.iter, rate)
        self.clip_gradients()
        for i, blob in enumerate(self.net.learnable_params):
            if self.param.iter_size > 1:
                blob.diff[...] *= 1.0 / self.param.iter_size
            self.regularize(i)
            self.compute_update(i, rate)
            blob.data[...] -= blob.diff

    def clip_gradients(self):
        limit = self.param.clip_gradients
        if limit < 0:
            return
        params = self.net.learnable_params
        norm = float(np.sqrt(sum(float(np.vdot(p.diff, p.diff)) for p in params)))
        if norm > limit:
            log.info("Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale "
                     "factor %g", norm, limit, limit / norm)
            for p in params:
                p.diff[...] *= limit / norm

    def regularize(self, i):
        decay = self.param.weight_decay * self.net.params_weight_decay[i]
        if not decay:
            return
        blob = self.net.learnable_params[i]
        if self.param.regularization_type == "L2":
            blob.diff[...] += decay * blob.data
        else:
            blob.diff[...] += decay * np.sign(blob.data)

    def compute_update(self, i, rate):
        raise NotImplementedError

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot_prefix(self):
        prefix = self.param.snapshot_prefix
        if not prefix:
            raise ConfnetError("solver: snapshot needs snapshot_prefix")
        return prefix

    def snapshot(self):
        """Write <prefix>_iter_N.caffemodel and .solverstate (each atomically); with
        ``snapshot_format: HDF5``, .caffemodel.h5 and .solverstate.h5 in Caffe's HDF5 layout."""
        in_hdf5 = self.param.snapshot_format == pb.SolverParameter.HDF5
        if in_hdf5:
            hdf5.import_h5py("solver: snapshot_format HDF5")
        base = f"{self.snapshot_prefix()}_iter_{self.iter}"
        folder = os.path.dirname(base)
        if folder:
            os.makedirs(folder, exist_ok=True)
        suffix, kind = (".h5", "HDF5 file") if in_hdf5 else ("", "binary proto file")
        model, state_file = f"{base}.caffemodel{suffix}", f"{base}.solverstate{suffix}"
        log.info("Snapshotting to %s %s", kind, model)
        self.net.save(model, write_diff=self.param.snapshot_diff)
        log.info("Snapshotting solver state to %s %s", kind, state_file)
        write = hdf5.write_solver_state if in_hdf5 else io.write_binary
        write(self._solver_state(model), state_file)
        return model, state_file

    def _solver_state(self, model):
        """The SolverState of this moment, its weights being in `model`."""
        state = pb.SolverState(iter=self.iter, learned_net=model,
                               current_step=current_step(self.param, self.iter),
                               rng_state=rng.get_state())
        for h in self.history:
            state.history.append(io.array_to_blob(h))
        for layer in self.net.data_layers:
            position, layer_rng = layer.cursor_state()
            state.data_cursor.add(layer=layer.name, position=position, rng_state=layer_rng)
        return state

    def restore(self, path):
        """Continue from a .solverstate (or .solverstate.h5): weights, iteration, optimizer
        history, RNG, data positions."""
        log.info("Restoring previous solver status from %s", path)
        if hdf5.is_hdf5(path):
            state = hdf5.read_solver_state(path)
        else:
            state = io.read_binary(path, pb.SolverState)
        if len(state.history) != len(self.history):
            raise ConfnetError(f"{path}: {len(state.history)} history blobs, this solver keeps "
                               f"{len(self.history)}; was it written for another net or type?")
        if state.learned_net:
            self.net.copy_from(self._find_learned_net(state.learned_net, path))
        for h, blob in zip(self.history, state.history):
            saved = io.blob_to_array(blob)
            if saved.size != h.size:
                raise ConfnetError(f"{path}: history blob of shape {saved.shape} for a "
                                   f"parameter of shape {h.shape}")
            h[...] = saved.reshape(h.shape)
        self.iter = state.iter
        if state.rng_state:
            rng.set_state(state.rng_state)
        layers = {layer.name: layer for layer in self.net.data_layers}
        for cursor in state.data_cursor:
            if cursor.layer in layers:
                layers[cursor.layer].restore_cursor(cursor.position, cursor.rng_state)

    @staticmethod
    def _find_learned_net(model, state_path):
        if os.path.exists(model):
            return model
        beside = os.path.join(os.path.dirname(state_path), os.path.basename(model))
        if os.path.exists(beside):
            return beside
        raise ConfnetError(f"{state_path}: its weights file '{model}' does not exist")


class _Speedometer:
    """Iterations per second between displays, not counting time spent testing or snapshotting."""

    def __init__(self, it):
        self.it, self.start, self.excluded = it, time.perf_counter(), 0.0

    def lap(self, it):
        now = time.perf_counter()
        elapsed = now - self.start - self.excluded
        speed = (it - self.it) / elapsed if it > self.it and elapsed > 0 else 0.0
        self.it, self.start, self.excluded = it, now, 0.0
        return speed

    @contextlib.contextmanager
    def paused(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - start
