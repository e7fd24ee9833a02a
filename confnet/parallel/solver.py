"""The solver of one rank of a data-parallel job: any optimizer, trained by N processes as one.

    data_parallel(SGDSolver, job) -> a class DataParallelSGDSolver(DataParallel, SGDSolver)

Every rank builds the same nets and runs the ordinary solver loop, with these differences:

- At the first step, the ranks take rank 0's weights, optimizer history and data positions;
  then rank r reads batches r, r + N, r + 2N, ... of the sequence one process would read
  (BatchPrefetcher.shard), and draws its own random stream (dropout, crops, mirrors).
- After backward (``gradients_ready``) the gradients are averaged over the ranks in fused
  buckets (GradientBuckets), together with the loss and the stop/snapshot requests, so every
  rank applies the same update and stops at the same iteration. N ranks of batch B therefore
  train as one process of batch N x B with the same base_lr.
- Every ``display`` iterations a checksum of the weights is compared across ranks; ranks that
  drifted apart stop the job with an error.
- Rank 0 alone logs, runs the test nets and writes the metrics CSV and the snapshots; its
  snapshot records every rank's random state and data cursors (SolverState.rank_state), so a
  run resumed with the same N continues exactly.
"""

import hashlib
import math

import numpy as np

from .. import rng
from ..errors import ConfnetError
from ..proto import confnet_pb2 as pb
from .buckets import GradientBuckets


def data_parallel(solver_cls, job):
    """The data-parallel version of the optimizer class ``solver_cls`` for the ranks of ``job``
    (a parallel.job.MPIJob)."""
    return type(f"DataParallel{solver_cls.__name__}", (DataParallel, solver_cls), {"job": job})


def _agreed_request(key):
    """A request flag: set locally, read as the ranks agreed at the last gradient average."""
    def get(solver):
        return solver._agreed[key]

    def set_(solver, value):
        solver._local[key] = bool(value)
        if not value:
            solver._agreed[key] = False
    return property(get, set_)


class DataParallel:
    """Mixed in before a Solver subclass; ``job`` (with ``comm``) is set on the made class."""

    job = None

    def __init__(self, param, solver_path=None):
        # Stop/snapshot requests (signals, callbacks) are local until the next gradient
        # average, where the ranks agree on them: all stop, or snapshot, at the same iteration.
        self._local = {"stop": False, "snapshot": False}
        self._agreed = {"stop": False, "snapshot": False}
        self._joined = False    # data sharded and random streams split (the first step does it)
        self._synced = False    # weights and history equal to rank 0's
        self._resume = None     # this rank's RankState from a solverstate, applied at the join
        self._rank_states = []
        if param.snapshot_format == pb.SolverParameter.HDF5:
            raise ConfnetError("solver: snapshot_format HDF5 cannot hold every rank's data "
                               "positions; use BINARYPROTO for data-parallel training")
        super().__init__(param, solver_path)
        for layer in self.net.data_layers:
            if not hasattr(layer, "shard"):
                layer.fail("cannot split its records between the ranks of a data-parallel "
                           "run; use a Data, ImageData or WindowData layer")
        self.buckets = GradientBuckets(self.net.learnable_params)
        self.on_iteration.append(_check_drift)

    @property
    def comm(self):
        return self.job.comm

    requested_stop = _agreed_request("stop")
    requested_snapshot = _agreed_request("snapshot")

    # -- building and starting ---------------------------------------------------------------------
    def _test_nets(self):
        return super()._test_nets() if self.comm.rank == 0 else []

    def _metrics_columns(self, resume_at):
        return super()._metrics_columns(resume_at) if self.comm.rank == 0 else None

    def batch_size(self):
        """The batch of the whole job: N ranks times the train net's batch."""
        return super().batch_size() * self.comm.size

    def step(self, iters):
        if not self._joined:
            self._join()
        if not self._synced:
            self._broadcast_weights()
        return super().step(iters)

    def _join(self):
        comm = self.comm
        for layer in self.net.data_layers:
            if self._resume is None:
                layer.restore_cursor(*comm.bcast_object(layer.cursor_state()))
            layer.shard(comm.rank, comm.size)
        if self._resume is None:
            rng.fork(comm.rank)
        else:
            self.load_positions(self._resume)
        self._joined = True

    def _broadcast_weights(self):
        for blob in self.net.learnable_params:
            data = np.ascontiguousarray(blob.data)
            self.comm.broadcast(data)
            blob.data[...] = data
        for h in self.history:
            self.comm.broadcast(h.data)
        self._synced = True

    # -- the iteration -----------------------------------------------------------------------------
    def gradients_ready(self, loss):
        # On a device the loss stays there (None): the ranks then average only the gradients.
        on_device = loss is None
        loss, stop, snapshot = self.buckets.average(
            self.comm, (0.0 if on_device else loss, self._local["stop"], self._local["snapshot"]))
        self._agreed["stop"] |= bool(stop > 0)
        self._agreed["snapshot"] |= bool(snapshot > 0)
        if not math.isfinite(loss):
            self.job.failed_together = True   # every rank raises the same error now
        return None if on_device else float(loss)

    # -- snapshots -------------------------------------------------------------------------------
    def snapshot(self):
        """Every rank sends rank 0 its random state and cursors; rank 0 writes the files."""
        mine = pb.RankState(rank=self.comm.rank)
        self.save_positions(mine)
        states = self.comm.gather(mine.SerializeToString())
        if self.comm.rank != 0:
            return None
        self._rank_states = [pb.RankState.FromString(s) for s in states]
        return super().snapshot()

    def _solver_state(self, model):
        state = super()._solver_state(model)
        state.rank_state.extend(self._rank_states)
        return state

    def restore_positions(self, state, path):
        ranks = len(state.rank_state)
        if ranks != self.comm.size:
            written = f"{ranks} ranks" if ranks else "a single process"
            raise ConfnetError(f"{path} was written by {written}; this run has "
                               f"{self.comm.size}: resume with the same number of ranks")
        self._resume = state.rank_state[self.comm.rank]
        self._synced = False
        if self._joined:
            self.load_positions(self._resume)


def weights_checksum(net):
    """A 64-bit digest of every learnable parameter's bytes (equal ranks, equal digests)."""
    digest = hashlib.blake2b(digest_size=8)
    for blob in net.learnable_params:
        digest.update(np.ascontiguousarray(blob.cpu_data).tobytes())
    return digest.hexdigest()


def _check_drift(solver, _loss):
    """After every ``display``-th update: the ranks' weights must be bit-for-bit equal."""
    display = solver.param.display
    if not display or solver.iter % display:
        return
    sums = solver.comm.allgather(weights_checksum(solver.net))
    drifted = [r for r, s in enumerate(sums) if s != sums[0]]
    if drifted:
        solver.job.failed_together = True
        raise ConfnetError(f"iteration {solver.iter}: the weights of rank(s) "
                           f"{', '.join(map(str, drifted))} differ from rank 0's (weight "
                           f"checksums {', '.join(sums)}): the ranks drifted apart, so the job "
                           "stops; every rank must run the same confnet, net and solver")
