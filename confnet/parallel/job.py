"""The job this process belongs to: a single process, or one rank of several started by
``mpirun``/``mpiexec``/``srun``.

    job = current_job()
    with job.guard():                       # a rank's error ends the whole job
        solver = job.agree(lambda: job.solver_class(SGDSolver)(param, path))
        solver.solve()

``agree`` runs a step that involves no communication (building the nets, reading files) on
every rank and then compares the outcomes: if any rank failed, every rank raises the same
error (naming the rank unless all failed alike) and the job ends cleanly, the message printed
once, by rank 0. An error raised later on one rank alone (bad data in its share of the records,
a crash) cannot wait for the others, which are inside a collective: that rank prints it, naming
itself, and calls MPI_Abort, which ends every rank within seconds.
"""

import contextlib
import logging
import os
import sys
import time
import traceback

from ..errors import ConfnetError

log = logging.getLogger("confnet")

# The number of ranks, as each launcher tells its processes before MPI starts.
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
                   "SLURM_STEP_NUM_TASKS")


def launched_ranks(environ=None):
    """How many ranks the launcher started (1 when not started by one); reads the environment
    only, so that a single process never loads MPI."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


class SingleJob:
    """One process: every operation is the plain one."""

    size, rank = 1, 0

    @staticmethod
    def solver_class(solver_cls):
        return solver_cls

    @staticmethod
    def agree(step):
        return step()

    @staticmethod
    def guard():
        return contextlib.nullcontext()


class MPIJob:
    """Rank ``comm.rank`` of ``comm.size`` processes training one model."""

    def __init__(self, comm):
        self.comm = comm
        self.size, self.rank = comm.size, comm.rank
        self.failed_together = False   # set when every rank raises the same error at once

    def solver_class(self, solver_cls):
        from .solver import data_parallel
        return data_parallel(solver_cls, self)

    def agree(self, step):
        """``step()`` on every rank; if it raised on any, the same ConfnetError on all."""
        try:
            result, failure = step(), None
        except (ConfnetError, OSError) as e:
            result, failure = None, _one_line(e)
        failures = self.comm.allgather(failure)
        failed = [(rank, text) for rank, text in enumerate(failures) if text is not None]
        if not failed:
            return result
        self.failed_together = True
        rank, text = failed[0]
        if len({text for _, text in failed}) == 1 and len(failed) == self.size:
            raise ConfnetError(text)
        raise ConfnetError(f"rank {rank} of {self.size}: {text}")

    @contextlib.contextmanager
    def guard(self):
        try:
            yield
        except SystemExit:
            raise
        except BaseException as e:   # any error of one rank must end every rank
            if self.failed_together:
                if self.rank == 0:
                    raise   # the CLI prints it once and exits; the other ranks exit quietly
                sys.exit(1)
            self._abort(e)

    def _abort(self, error):
        if isinstance(error, KeyboardInterrupt):
            text = "interrupted: stopped at once, nothing more written"
        elif isinstance(error, (ConfnetError, OSError)):
            text = f"error: {_one_line(error)}"
        else:
            text = "error: " + "".join(traceback.format_exception(error)).rstrip()
        sys.stderr.write(f"confnet: rank {self.rank} of {self.size}: {text}\n")
        sys.stderr.flush()
        # The launcher forwards our stderr through a pipe; MPI_Abort kills its forwarding
        # processes at once, which sometimes dropped the line just written (seen with mpich's
        # mpirun). A moment first lets it through; the job still ends within a second.
        time.sleep(0.5)
        self.comm.abort(1)


def _one_line(error):
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


_job = None


def current_job():
    """The job of this process: an MPIJob when a launcher started several ranks (rank 0 keeps
    the log; the others log errors only), else a SingleJob."""
    global _job
    if _job is None:
        _job = SingleJob()
        if launched_ranks() > 1:
            from .comm import HostMPI
            comm = HostMPI()
            if comm.size > 1:   # else MPI started this process alone, whatever the variables say
                _job = MPIJob(comm)
                if _job.rank != 0:
                    log.setLevel(logging.ERROR)
    return _job
