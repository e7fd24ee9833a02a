"""The collective operations data-parallel training needs, behind one small interface.

    rank, size                      this process's rank and the number of ranks
    allreduce_start(buf) -> handle  start summing a flat float array over the ranks, in place;
                                    handle.Wait() returns when ``buf`` holds the sum
    broadcast(buf, root=0)          overwrite ``buf`` with root's copy, in place
    allgather(obj) / gather(obj)    small Python objects (checksums, cursors, error messages)
    abort(code)                     end every rank of the job now

``HostMPI`` implements it with mpi4py on host (numpy) buffers. A GPU build would add an NCCL
implementation of the two buffer operations on device buffers (on confnet's stream, with MPI
only to exchange the NCCL unique id) and keep MPI for the object operations; that path is not
built yet.
"""

from ..errors import ConfnetError


def import_mpi():
    """mpi4py's MPI module, or a one-line error saying how to get it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ConfnetError(f"data-parallel training needs mpi4py and an MPI ({e}); install them "
                           "with: pip install 'confnet[mpi]'") from None
    return MPI


class HostMPI:
    """The Communicator on host buffers over an mpi4py communicator (COMM_WORLD by default)."""

    def __init__(self, comm=None):
        self.mpi = import_mpi()
        self.comm = comm if comm is not None else self.mpi.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce_start(self, buf):
        """Non-blocking in-place sum: the next buffer can be packed while this one travels."""
        return self.comm.Iallreduce(self.mpi.IN_PLACE, buf, op=self.mpi.SUM)

    def broadcast(self, buf, root=0):
        self.comm.Bcast(buf, root=root)

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def gather(self, obj, root=0):
        return self.comm.gather(obj, root=root)

    def bcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def abort(self, code=1):
        self.comm.Abort(code)
