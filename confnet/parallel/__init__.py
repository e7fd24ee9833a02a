"""Data-parallel training over MPI: N processes (ranks) train one model, each on its own share of
the records, with the gradients averaged by an allreduce after every backward.

    mpirun -n 2 confnet train --solver solver.prototxt

job.py      which job this process belongs to (one process, or a rank), errors that end the job
comm.py     the collective operations behind a small interface (MPI on host buffers)
buckets.py  the gradient average over fused buckets
solver.py   the solver of one rank (any optimizer)

mpi4py and an MPI come from the ``mpi`` extra; nothing here imports them unless a launcher
started several ranks.
"""

from .job import current_job, launched_ranks

__all__ = ["current_job", "launched_ranks"]
