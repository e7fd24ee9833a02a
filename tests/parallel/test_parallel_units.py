"""The pieces of data-parallel training in one process, with a stand-in communicator that plays
rank 0 of 2 whose partner holds given values: bucket layout and averaging, the drift check, the
agreement on errors, and which solverstates a run may resume from."""

import numpy as np
import pytest

from confnet.blob import Blob
from confnet.errors import ConfnetError
from confnet.parallel import launched_ranks
from confnet.parallel.buckets import GradientBuckets
from confnet.parallel.job import MPIJob
from confnet.proto import confnet_pb2 as pb
from confnet.solver import solver_class
from tests.solver.tiny_net import make_solver


class _Done:
    def Wait(self):   # mpi4py's name
        pass


class PartnerComm:
    """Rank 0 of 2; the other rank's buffers hold ``partner(buf)`` and its objects ``other``."""

    rank, size = 0, 2

    def __init__(self, partner=lambda buf: buf, other=None):
        self.partner, self.other, self.calls = partner, other, 0

    def allreduce_start(self, buf):
        self.calls += 1
        buf += self.partner(buf.copy())
        return _Done()

    def broadcast(self, buf, root=0):
        pass

    def allgather(self, obj):
        return [obj, obj if self.other is None else self.other]

    def gather(self, obj, root=0):
        return [obj, obj]

    def bcast_object(self, obj, root=0):
        return obj


def blob(shape, value):
    b = Blob(shape)
    b.diff[...] = value
    return b


def test_buckets_group_parameters_backwards_and_average_in_one_call_per_bucket():
    blobs = [blob((3, 4), 1.0), blob((5,), 2.0), blob((100,), 3.0), blob((2, 2), 4.0)]
    buckets = GradientBuckets(blobs, bucket_bytes=100 * 4)
    comm = PartnerComm(partner=lambda buf: 3 * buf)   # the other rank's gradients are 3x ours
    scalars = buckets.average(comm, (1.5, 1.0, 0.0))
    assert comm.calls == len(buckets.buckets) + 1
    for b, value in zip(blobs, (1.0, 2.0, 3.0, 4.0)):
        np.testing.assert_array_equal(b.diff, np.full(b.diff.shape, 2 * value, np.float32))
    np.testing.assert_allclose(scalars, [3.0, 2.0, 0.0])


def test_buckets_follow_backward_order_and_close_before_the_size_limit():
    blobs = [blob((3, 4), 1.0), blob((5,), 2.0), blob((100,), 3.0), blob((2, 2), 4.0)]
    layout = [[b.diff.size for b in group]
              for group, _ in GradientBuckets(blobs, bucket_bytes=100 * 4).buckets]
    assert layout == [[4], [100], [5, 12]]   # the 400-byte parameter gets a bucket of its own
    assert [len(group) for group, _ in GradientBuckets(blobs).buckets] == [4]


def parallel_solver(comm):
    """(job, the tiny net's SGD solver as rank 0 of 2, the same solver alone), display: 1."""
    plain, net = make_solver("base_lr: 0.1")
    plain.param.display = 1
    plain.param.weight_decay = 0   # so that the step is proportional to the gradient
    job = MPIJob(comm)
    solver = job.solver_class(solver_class("SGD"))(plain.param)
    for name in ("x", "y"):
        solver.net.blobs[name].data[...] = net.blobs[name].data
    return job, solver, plain


def test_weights_that_drift_apart_stop_the_job_on_every_rank():
    job, solver, _ = parallel_solver(PartnerComm())
    solver.step(2)   # equal checksums: fine
    solver.comm.other = "0123456789abcdef"
    with pytest.raises(ConfnetError, match=r"iteration 3: the weights of rank\(s\) 1 differ"):
        solver.step(1)
    assert job.failed_together


def test_averaged_gradients_and_loss_are_what_the_update_uses():
    _, solver, plain = parallel_solver(PartnerComm(partner=lambda buf: 0 * buf))
    before = [p.data.copy() for p in solver.net.learnable_params]
    solver.step(1)
    # The partner's gradients are zero: the average halves ours, so the step is half of SGD's.
    plain.step(1)
    for p, q, w in zip(solver.net.learnable_params, plain.net.learnable_params, before):
        assert np.abs(w - q.data).max() > 1e-3
        np.testing.assert_allclose(w - p.data, (w - q.data) / 2, rtol=1e-5, atol=1e-7)
    assert solver.losses[-1] == pytest.approx(plain.losses[-1] / 2)


def test_an_error_on_some_ranks_while_building_is_raised_on_every_rank_naming_the_first():
    job = MPIJob(PartnerComm(other="cannot open LMDB 'x'"))
    with pytest.raises(ConfnetError, match=r"^rank 1 of 2: cannot open LMDB 'x'$"):
        job.agree(lambda: 42)
    assert job.failed_together
    assert MPIJob(PartnerComm()).agree(lambda: 42) == 42


def test_resume_needs_the_same_number_of_ranks(tmp_path):
    state = pb.SolverState(iter=3)
    state.rank_state.add(rank=0)
    state.rank_state.add(rank=1)
    plain, _ = make_solver("")
    with pytest.raises(ConfnetError, match=r"data-parallel run of 2 ranks; .*mpirun -n 2"):
        plain.restore_positions(state, "s.solverstate")
    _, solver, _ = parallel_solver(PartnerComm())
    with pytest.raises(ConfnetError, match="written by a single process; this run has 2"):
        solver.restore_positions(pb.SolverState(iter=3), "s.solverstate")


def test_launched_ranks_reads_the_launchers_variables():
    assert launched_ranks({}) == 1
    assert launched_ranks({"PMI_SIZE": "4"}) == 4
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    assert launched_ranks({"SLURM_STEP_NUM_TASKS": "8"}) == 8
