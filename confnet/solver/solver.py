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
import os
import time
from collections import deque

import numpy as np

from .. import rng
from ..errors import ConfnetError
from ..layers import TEST, TRAIN
from ..net import Net
from ..proto import confnet_pb2 as pb
from ..proto import io
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
        self.requested_stop = False
        self.on_iteration = []   # callbacks f(solver, loss) after each iteration

    # -- building ------------------------------------------------------------------------------
    def _check_param(self):
        p = self.param
        if p.iter_size < 1:
            raise ConfnetError("solver: iter_size must be at least 1")
        if p.regularization_type not in ("L1", "L2"):
            raise ConfnetError(f"solver: unknown regularization_type '{p.regularization_type}'; "
                               "use L1 or L2")
        if p.solver_mode == pb.SolverParameter.GPU:
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
        if resume_file:
            self.restore(resume_file)
        p = self.param
        log.info("Solving %s", self.net.name)
        log.info("Learning Rate Policy: %s", p.lr_policy)
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_stop:
            log.info("Optimization stopped early at iteration %d.", self.iter)
            return
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward()
            log.info("Iteration %d, loss = %g", self.iter, loss)
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

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
            loss = sum(self.net.forward_backward() for _ in range(p.iter_size)) / p.iter_size
            self.losses.append(loss)
            if p.display and self.iter % p.display == 0:
                self._display(sum(self.losses) / len(self.losses), clock.lap(self.iter))
            self.apply_update()
            self.iter += 1
            for callback in self.on_iteration:
                callback(self, loss)
            if p.snapshot and self.iter % p.snapshot == 0:
                with clock.paused():
                    self.snapshot()
        return sum(self.losses) / len(self.losses) if self.losses else None

    def _display(self, smoothed, speed):
        batch = self.batch_size()
        log.info("Iteration %d (%.2f iter/s, %.0f images/s), loss = %g", self.iter, speed,
                 speed * batch * self.param.iter_size, smoothed)
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
            loss += net.forward()
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
        return scores

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
        """Write <prefix>_iter_N.caffemodel and .solverstate (each atomically)."""
        if self.param.snapshot_format == pb.SolverParameter.HDF5:
            raise ConfnetError("solver: snapshot_format HDF5 is not supported yet; use BINARYPROTO")
        base = f"{self.snapshot_prefix()}_iter_{self.iter}"
        folder = os.path.dirname(base)
        if folder:
            os.makedirs(folder, exist_ok=True)
        model = base + ".caffemodel"
        log.info("Snapshotting to binary proto file %s", model)
        self.net.save(model, write_diff=self.param.snapshot_diff)
        state = pb.SolverState(iter=self.iter, learned_net=model,
                               current_step=current_step(self.param, self.iter),
                               rng_state=rng.get_state())
        for h in self.history:
            state.history.append(io.array_to_blob(h))
        for layer in self.net.data_layers:
            position, layer_rng = layer.cursor_state()
            state.data_cursor.add(layer=layer.name, position=position, rng_state=layer_rng)
        log.info("Snapshotting solver state to binary proto file %s", base + ".solverstate")
        io.write_binary(state, base + ".solverstate")
        return model, base + ".solverstate"

    def restore(self, path):
        """Continue from a .solverstate: weights, iteration, optimizer history, RNG, data."""
        log.info("Restoring previous solver status from %s", path)
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
