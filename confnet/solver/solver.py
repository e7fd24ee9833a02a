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

On a device, with ``cuda_graph`` (the default; ``--no-graph`` turns it off), the iteration after
the first is captured as a CUDA graph (clear, forward, backward, update; one graph per kind of
``iter_size`` pass) and replayed from then on (``_graph_iteration``). What stays outside the
graph: the data layers' forward (the batch copy into the same device buffers), the one upload of
the per-iteration values (learning rates, dropout seeds: ``gpu.graph.ScalarTable``), the copy of
the iteration's loss into the loss log, tests, display and snapshots.
"""

import contextlib
import functools
import logging
import math
import os
import time
from collections import deque

import numpy as np

from .. import gpu, memory, metrics, rng
from ..blob import Blob
from ..errors import ConfnetError
from ..gpu.graph import GraphRunner
from ..layers import TEST, TRAIN, Layer
from ..net import Net
from ..proto import confnet_pb2 as pb
from ..proto import hdf5, io
from .lr_policy import current_step, learning_rate

log = logging.getLogger("confnet")


class Solver:
    history_per_param = 1   # blobs of optimizer state per learnable parameter
    net_class = Net         # the class of the train and test nets (confnet.caffe's Net there)
    share_test_blobs = True  # test nets share blob memory by lifetime (confnet/memory_plan.py)

    def __init__(self, param, solver_path=None):
        self.param = param
        self.solver_dir = os.path.dirname(os.path.abspath(solver_path)) if solver_path else None
        self.iter = 0
        self._check_param()
        self._allow_tf32()
        if param.random_seed >= 0:
            rng.seed(param.random_seed)
        self.net = self._train_net()
        self._check_loss(self.net)
        self.test_nets = self._test_nets()
        for test_net in self.test_nets:
            test_net.share_weights_from(self.net)
        # Caffe's layout: blob k of every parameter comes before blob k + 1 of any of them.
        self.history = [Blob(p.shape, name=f"history {k}.{i}")
                        for k in range(self.history_per_param)
                        for i, p in enumerate(self.net.learnable_params)]
        self.losses = deque(maxlen=max(param.average_loss, 1))
        self._device_losses = None    # per-iteration losses not yet read from the device
        self._sumsq_slots = None      # device buffer of clip_gradients' per-parameter sums
        self._rate_slots = None       # device: each parameter's rate, in the scalar table
        self._graphs = None           # gpu.graph.GraphRunner of a device run with cuda_graph
                                      # (made at the first iteration; off: it runs eagerly)
        self._fed_shapes = None       # the source layers' top shapes the graphs were made for
        self._graph_arrays = (None, [])   # (captures, the blobs' synced arrays) for replays
        self.requested_stop = False       # finish the current iteration, then stop
        self.requested_snapshot = False   # snapshot after the current iteration
        self.on_iteration = []   # callbacks f(solver, loss) after each iteration
        # Caffe's Solver::Callback: objects with on_start() (before forward) and
        # on_gradients_ready() (after backward, before the update), called every iteration.
        self.callbacks = []
        self.metrics = None      # a metrics.CSVWriter while solve() runs, opened at its first row
        self.last_snapshot = None   # (iteration, weights file) of the newest snapshot written
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

    def _allow_tf32(self):
        """On a device, the train and test nets' matrix products may run on TF32 tensor cores
        (blas.set_tf32) as ``allow_tf32`` says (``confnet train --no-tf32`` clears it)."""
        if gpu.current() is None:
            return
        from ..gpu import blas
        blas.set_tf32(self.param.allow_tf32)
        log.info("TF32 tensor-core products: %s", "on" if self.param.allow_tf32 else "off")

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
        return self.net_class(net_param, TRAIN, state.level, list(state.stage))

    @staticmethod
    def _check_loss(net):
        """A train net without a loss would "train" with loss 0 and snapshot unchanged weights."""
        if not any(w for layer in net.layers for w in layer.loss_weights):
            raise ConfnetError(f"solver: the train net '{net.name}' has no loss (no layer with "
                               "a loss_weight, such as SoftmaxWithLoss), so training would "
                               "change nothing; add a loss layer to its TRAIN phase")

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
            nets.append(self.net_class(net_param, TEST, state.level, list(state.stage),
                                       share_blobs=self.share_test_blobs))
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
        self._log_device_memory()
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
            graphs = self._graph_runner()
            if graphs is None:
                self.net.clear_param_diffs()
            if (p.test_interval and self.iter % p.test_interval == 0
                    and (self.iter > 0 or p.test_initialization)):
                with clock.paused():
                    self.test_all()
                if self.requested_stop:
                    break
            for callback in self.callbacks:
                callback.on_start()
            if graphs is not None:
                self._graph_iteration(graphs, clock)
                loss = None   # on the device, the loss stays there (as _forward_backward's)
            else:
                loss = self._forward_backward()
                self._display_if_due(clock)
                for callback in self.callbacks:
                    callback.on_gradients_ready()
                self.apply_update()
            self.iter += 1
            for callback in self.on_iteration:
                callback(self, loss)
            if (p.snapshot and self.iter % p.snapshot == 0) or self.requested_snapshot:
                self.requested_snapshot = False
                with clock.paused():
                    self.snapshot()
        self._read_device_losses()
        return sum(self.losses) / len(self.losses) if self.losses else None

    def _forward_backward(self):
        """iter_size forward/backward passes; the iteration's mean loss. On the device the
        loss stays there (returns None): it is logged in a device array that
        ``_read_device_losses`` copies back in one transfer, at display iterations or when full,
        so an iteration copies nothing back but what the user asked to see."""
        p = self.param
        if gpu.current() is None:
            loss = sum(self.net.forward_backward() for _ in range(p.iter_size)) / p.iter_size
            loss = self.gradients_ready(loss)
            self._check_finite(loss, self.iter)
            self.losses.append(loss)
            return loss
        losses = self._loss_log()
        losses.begin()
        for _ in range(p.iter_size):
            self.net.forward_backward(read_loss=False)
            losses.add(self.net.device_loss, 1.0 / p.iter_size)
        self.gradients_ready(None)
        self._store_device_loss()
        return None

    def _loss_log(self):
        if self._device_losses is None:
            p = self.param
            self._device_losses = _DeviceLosses(max(p.display, 1) if p.display else 100)
        return self._device_losses

    def _store_device_loss(self):
        self._device_losses.store(self.iter)
        if self._device_losses.full:
            self._read_device_losses()

    # -- CUDA graphs ---------------------------------------------------------------------------
    @property
    def graph_active(self):
        """Whether this run's iterations are replayed from CUDA graphs now: captured, replayed
        at least once, and not turned off since."""
        graphs = self._graphs
        return graphs is not None and graphs.enabled and graphs.replays > 0

    def _graph_runner(self):
        """The GraphRunner of this run, or None when iterations run eagerly: on the host, with
        cuda_graph off, where something the graph cannot hold runs every iteration (solver
        callbacks, data-parallel averaging), or after a capture broke."""
        if self._graphs is None:
            backend = gpu.current()
            if backend is None or not self.param.cuda_graph:
                return None
            self._graphs = GraphRunner(backend, before_replay=self._before_replay,
                                       after_replay=self._after_replay,
                                       save_state=self._save_heads)
            reason = self._graph_obstacle()
            if reason:
                self._graphs.turn_off(reason)
        return self._graphs if self._graphs.enabled else None

    def _graph_obstacle(self):
        """Why this solver's iterations cannot be replayed from a graph (None: they can)."""
        if type(self).gradients_ready is not Solver.gradients_ready:
            return "data-parallel training exchanges gradients between the ranks each iteration"
        if self.callbacks:
            return "solver callbacks run between forward/backward and the update"
        return None

    def _graph_iteration(self, graphs, clock):
        """One iteration through ``graphs``: per pass, the per-pass values (dropout seeds; the
        rates before the last) set on the host and uploaded in one copy, the batch fed, then
        the pass (cleared diffs first, the update last) run, captured or replayed."""
        p = self.param
        table = gpu.current().scalars
        rate = learning_rate(p, self.iter)
        losses = self._loss_log()
        for k in range(p.iter_size):
            first, last = k == 0, k == p.iter_size - 1
            for layer in self.net.layers:
                layer.prepare_pass()
            if last:
                self.prepare_update(rate)
            self._feed(graphs)
            table.flush()
            graphs.run((first, last), functools.partial(self._graph_pass, first, last, rate,
                                                        losses))
            table.end_pass()
        graphs.iteration_done()
        self._store_device_loss()
        if self._display_if_due(clock):
            log.info("Iteration %d, lr = %g", self.iter, rate)

    def _graph_pass(self, first, last, rate, losses):
        """A pass's device work, the same as the eager loop's: what a graph holds."""
        if first:
            self.net.clear_param_diffs()
            losses.begin()
        self.net.forward_backward(read_loss=False, fed=self.net.source_layers)
        losses.add(self.net.device_loss, 1.0 / self.param.iter_size)
        if last:
            self.update_params(rate)

    def _feed(self, graphs):
        """Forward the source layers (the batch into the device tops, outside the graph) and
        tell ``graphs`` when their shapes differ from the last pass's."""
        shapes = []
        for i in self.net.source_layers:
            self.net.forward_layer(i)
            for name in self.net.top_ids[i]:
                blob = self.net.blobs[name]
                blob.gpu_data   # noqa: B018 (a host-written top goes to the device here)
                shapes.append(blob.shape)
        shapes = tuple(shapes)
        if self._fed_shapes is not None and shapes != self._fed_shapes:
            graphs.inputs_changed(f"{self._fed_shapes} -> {shapes}")
        self._fed_shapes = shapes

    def _synced_arrays(self, fresh=False):
        """The host/device arrays of every blob a graph may touch (the nets' blobs, the layers'
        parameters and buffers, the history), found once per capture."""
        captures, arrays = self._graph_arrays
        if fresh or captures != self._graphs.captures:
            arrays = _synced_arrays([self.net, self.history, self._device_losses.current,
                                     self._sumsq_slots])
            self._graph_arrays = (self._graphs.captures, arrays)
        return arrays

    def _save_heads(self):
        """Which side of each blob is newer, and a function that puts that back."""
        heads = [(array, array.head) for array in self._synced_arrays(fresh=True)]

        def restore():
            for array, head in heads:
                array.head = head
        return restore

    def _before_replay(self):
        """A replay reads device memory: blobs written on the host since go there first."""
        for array in self._synced_arrays():
            if array.head == "host" and array._ptr is not None:
                array.device()

    def _after_replay(self):
        """A replay writes device memory without the blobs knowing: their device side is the
        newer one now (a later host read copies it back)."""
        for array in self._synced_arrays():
            if array.head == "synced":
                array.head = "device"

    def _read_device_losses(self):
        if self._device_losses is None:
            return
        for it, loss in self._device_losses.read():
            self._check_finite(loss, it)
            self.losses.append(loss)

    def _check_finite(self, loss, iteration):
        if not math.isfinite(loss):
            raise ConfnetError(self._non_finite_message(loss, iteration))

    def gradients_ready(self, loss):
        """Called when an iteration's gradients are in the parameters' diffs, before the
        update; returns the loss to record (None on the device, where the loss stays).
        Data-parallel training averages the gradients and the loss of all ranks here (Caffe's
        on_gradients_ready)."""
        return loss

    def _non_finite_message(self, loss, iteration):
        """Where a nan/inf loss comes from: the first layer, in forward order, whose output is
        not finite (an in-place layer shows as the layer that first wrote its blob). On the
        device the loss is read at display iterations, so the net may be a few iterations past
        the one named."""
        head = f"iteration {iteration}: the loss is {loss}"
        hint = f"lower base_lr (now {self.param.base_lr:g}) or set clip_gradients"
        for layer, bottoms, tops in zip(self.net.layers, self.net.bottom_ids, self.net.top_ids):
            bad = [t for t in tops if not np.isfinite(self.net.blobs[t].cpu_data).all()]
            if not bad:
                continue
            where = (f"{head}; layer '{layer.name}' ({layer.type_name}) is the first to output "
                     f"non-finite values, in top '{bad[0]}'")
            if not bottoms:
                return f"{where}: the input data holds nan or inf values; check the database"
            if any(not np.isfinite(b.cpu_data).all() for b in layer.blobs):
                return f"{where}, and its parameters are not finite: training diverged; {hint}"
            return f"{where} from finite inputs: training diverged or overflowed; {hint}"
        return f"{head}; {hint}"

    def _display_if_due(self, clock):
        """At a display iteration, the losses read from the device and shown; whether it was
        one."""
        if not (self.param.display and self.iter % self.param.display == 0):
            return False
        self._read_device_losses()
        self._display(sum(self.losses) / len(self.losses), clock.lap(self.iter))
        return True

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
            for value in blob.cpu_data.reshape(-1):
                suffix = f" (* {weight:g} = {weight * value:g} loss)" if weight else ""
                log.info("    Train net output #%d: %s = %g%s", index, name, value, suffix)
                index += 1
        self._log_device_memory()

    @staticmethod
    def _log_device_memory():
        """On a device: the caching allocator's peak and held bytes since the start."""
        backend = gpu.current()
        if backend is not None:
            pool = backend.pool
            log.info("    Device memory: %s peak, %s held (%s in use)", memory.human(pool.peak),
                     memory.human(pool.held), memory.human(pool.in_use))

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
                sums[name] = sums.get(name, 0) + net.blobs[name].cpu_data.astype(np.float64)
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
        self.prepare_update(rate)
        if gpu.current() is not None:
            gpu.current().scalars.flush()
        self.update_params(rate)

    def prepare_update(self, rate):
        """The host half of the update on a device: each parameter's rate (``step_rate``) into
        its slot of the scalar table, which the fused kernels read (uploaded by the caller)."""
        params = self.net.learnable_params
        if not params or not params[0].on_device or not hasattr(self, "update_param_gpu"):
            return
        if self._rate_slots is None:
            table = gpu.current().scalars
            self._rate_slots = [table.reserve(1) for _ in params]
        for i, slot in enumerate(self._rate_slots):
            slot.set_float(0, self.step_rate(i, rate))

    def step_rate(self, i, rate):
        """The rate parameter ``i``'s device update multiplies by: lr * lr_mult (computed in
        double, rounded to float once, as the host path's arithmetic)."""
        return rate * self.net.params_lr[i]

    def rate_pointer(self, i):
        """Device address of parameter ``i``'s rate (``prepare_update`` fills it)."""
        return self._rate_slots[i].pointer

    def update_params(self, rate):
        """The device half of the update (all of it on the host): clip, then per parameter
        average, decay, the optimizer's rule and ``w -= step``."""
        self.clip_gradients()
        for i, blob in enumerate(self.net.learnable_params):
            if blob.on_device and hasattr(self, "update_param_gpu"):
                self.update_param_gpu(i, blob)   # the steps below, fused in one kernel
                continue
            if self.param.iter_size > 1:
                blob.scale_diff(1.0 / self.param.iter_size)
            self.regularize(i)
            if blob.on_device:
                self.compute_update_gpu(i, blob, rate)
            else:
                self.compute_update(i, rate)
            blob.update()

    def clip_gradients(self):
        limit = self.param.clip_gradients
        if limit < 0:
            return
        params = self.net.learnable_params
        norm = math.sqrt(self._gradient_sumsq(params))
        if norm > limit:
            log.info("Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale "
                     "factor %g", norm, limit, limit / norm)
            for p in params:
                p.scale_diff(limit / norm)

    def _gradient_sumsq(self, params):
        """sum over all parameters of sum(diff^2). On the device: each parameter's sum by the
        deterministic two-pass reduction into its own slot of a device buffer, then one sum of
        the slots, so the same gradients give the same bits on every run. Its one float is read
        back to the host every iteration: acceptable only because clip_gradients asked for it
        (the decision to scale, and Caffe's log line, need the norm on the host); without
        clipping an iteration reads nothing back."""
        if not params or not params[0].on_device:
            return sum(p.sumsq_diff() for p in params)
        from ..gpu import blas
        if self._sumsq_slots is None or self._sumsq_slots.count != len(params) + 1:
            self._sumsq_slots = Blob((len(params) + 1,), name="gradient sums of squares")
        slots = self._sumsq_slots.mutable_gpu_data
        for i, p in enumerate(params):
            blas.sumsq(p.count, p.gpu_diff, slots + 4 * i)
        total = slots + 4 * len(params)
        blas.asum(len(params), slots, total)   # the slots are >= 0: their sum is their asum
        value = np.zeros(1, np.float32)
        gpu.current().dtoh(value, total)
        return float(value[0])

    def launch_update(self, kernel, i, blob, *rule):
        """Parameter ``i``'s fused device update: ``kernel`` of cuda/optimizers.cu over its data
        and diff with ``rule`` (history pointers, then the rule's scalars), followed by what
        every update shares: the weight decay (L2 or L1) and the iter_size average. The kernel
        does the loop's scale, decay, step and ``w -= step`` in one pass."""
        from ..gpu.launch import launch_1d
        p = self.param
        launch_1d("optimizers.cu", kernel, blob.count, blob.mutable_gpu_data,
                  blob.mutable_gpu_diff, *rule,
                  np.float32(p.weight_decay * self.net.params_weight_decay[i]),
                  np.int32(p.regularization_type == "L1"), np.float32(1.0 / p.iter_size))

    def history_gpu(self, i, k=0):
        """Device pointer of history blob ``k`` of parameter ``i`` (Caffe's layout: blob k of
        every parameter before blob k + 1 of any)."""
        return self.history[k * len(self.net.learnable_params) + i].mutable_gpu_data

    def regularize(self, i):
        decay = self.param.weight_decay * self.net.params_weight_decay[i]
        if not decay:
            return
        blob = self.net.learnable_params[i]
        blob.add_to_diff(decay, "data" if self.param.regularization_type == "L2" else "sign")

    def compute_update(self, i, rate):
        raise NotImplementedError

    def compute_update_gpu(self, i, blob, rate):
        """The device update; an optimizer without one runs its host update on copies."""
        if type(self).__name__ not in _host_updates:
            _host_updates.add(type(self).__name__)
            log.warning("%s has no device update yet: its update runs on the host, with a "
                        "copy of every parameter each way", type(self).__name__)
        self.compute_update(i, rate)

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
        self.last_snapshot = (self.iter, model)
        return model, state_file

    def _solver_state(self, model):
        """The SolverState of this moment, its weights being in `model`."""
        state = pb.SolverState(iter=self.iter, learned_net=model,
                               current_step=current_step(self.param, self.iter))
        for h in self.history:
            state.history.append(io.array_to_blob(h.cpu_data))
        self.save_positions(state)
        return state

    def save_positions(self, state):
        """Write the random state and the data layers' read positions into ``state`` (a
        SolverState, or a data-parallel rank's RankState)."""
        state.rng_state = rng.get_state()
        for layer in self.net.data_layers:
            position, layer_rng = layer.cursor_state()
            state.data_cursor.add(layer=layer.name, position=position, rng_state=layer_rng)

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
            if saved.size != h.count:
                raise ConfnetError(f"{path}: history blob of shape {saved.shape} for a "
                                   f"parameter of shape {h.shape}")
            h.set_data(saved.reshape(h.shape))
        self.iter = state.iter
        self.restore_positions(state, path)

    def restore_positions(self, state, path):
        """Take back the random state and the data layers' read positions of a SolverState."""
        if len(state.rank_state) > 1:
            raise ConfnetError(f"{path} was written by a data-parallel run of "
                               f"{len(state.rank_state)} ranks; resume it with as many "
                               f"(mpirun -n {len(state.rank_state)} confnet train ...)")
        self.load_positions(state)

    def load_positions(self, state):
        """Take back what ``save_positions`` wrote."""
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


_host_updates = set()   # optimizers already reported as updating on the host


class _DeviceLosses:
    """Per-iteration losses kept in a device array of ``size`` slots, read back in one copy.
    An iteration's passes add into ``current`` (a fixed address, so a CUDA graph can hold the
    adds), which ``store`` then copies into the next slot."""

    def __init__(self, size):
        self.blob = Blob((size,), name="iteration losses")
        self.current = Blob((1,), name="iteration loss")
        self.iterations = []   # the iteration of each filled slot, in order

    @property
    def full(self):
        return len(self.iterations) == self.blob.count

    def begin(self):
        """Zero the iteration's loss."""
        gpu.current().memset_d32(self.current.mutable_gpu_data, 0, 1)

    def add(self, loss_blob, scale):
        from ..gpu import blas
        blas.axpy(1, np.float32(scale), loss_blob.gpu_data, self.current.mutable_gpu_data)

    def store(self, iteration):
        """Copy the iteration's loss into the next free slot (on the device)."""
        ptr = self.blob.mutable_gpu_data + 4 * len(self.iterations)
        gpu.current().dtod(ptr, self.current.gpu_data, 4)
        self.iterations.append(iteration)

    def read(self):
        """[(iteration, loss)] of the filled slots, which are then free again."""
        if not self.iterations:
            return []
        values = np.zeros(len(self.iterations), np.float32)
        gpu.current().dtoh(values, self.blob.gpu_data)
        pairs = list(zip(self.iterations, (float(v) for v in values)))
        self.iterations = []
        return pairs


def _synced_arrays(roots):
    """The SyncedArrays of every Blob reachable from ``roots`` through lists, tuples, dicts and
    confnet objects' attributes (nets, layers, their helpers), each once."""
    from ..blob import SyncedArray
    found, seen, stack = {}, set(), list(roots)
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Blob):
            for array in (obj._data, obj._diff):
                if isinstance(array, SyncedArray):
                    found[id(array)] = array
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (Net, Layer)) or (
                type(obj).__module__.startswith("confnet.") and hasattr(obj, "__dict__")):
            stack.extend(vars(obj).values())
    return list(found.values())


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
