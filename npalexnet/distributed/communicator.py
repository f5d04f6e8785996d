"""The communicator interface, and its single-process implementation.

A communicator is the only thing the training code talks to for
collectives; which engine moves the bytes (nothing, MPI, NCCL) is chosen once,
at start-up (:func:`npalexnet.distributed.init`). The interface is the small
subset of MPI that data-parallel training needs, in MPI's vocabulary:

========================  ==================================================
``rank``, ``size``        this process's number and the number of processes
``local_rank``,           the same among the processes of this machine (the
``local_size``            GPU a process uses is its ``local_rank``)
``allreduce(buf)``        in-place sum of one flat array over all ranks
``broadcast(arr, root)``  in-place copy of ``root``'s array to every rank
``broadcast_object``      the same for a small picklable Python object
``allgather_object``      every rank's object, as a list indexed by rank
``barrier()``             wait for every rank
``abort(code)``           end every rank now (for errors; never returns)
========================  ==================================================
"""

from __future__ import annotations

import os
import sys


class DistributedSetupError(RuntimeError):
    """A problem found at start-up (missing mpi4py, mismatched ranks, too few GPUs).

    Raised on every rank with the same message, so that rank 0 can print it and
    all ranks can exit cleanly instead of aborting.
    """


class Communicator:
    """Base class: the attributes every implementation sets, and the interface."""

    #: the engine's name, for log lines ("single", "mpi", "nccl")
    name = "base"

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0, local_size: int = 1):
        self.rank, self.size = int(rank), int(size)
        self.local_rank, self.local_size = int(local_rank), int(local_size)

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that prints, writes metrics and checkpoints."""
        return self.rank == 0

    def allreduce(self, buffer):
        """Sum ``buffer`` (a contiguous 1-D NumPy or CuPy array) over ranks, in place; returns it."""
        raise NotImplementedError

    def broadcast(self, array, root: int = 0):
        """Overwrite ``array`` (contiguous) on every rank with ``root``'s; returns it."""
        raise NotImplementedError

    def broadcast_object(self, obj, root: int = 0):
        """``root``'s ``obj`` on every rank (pickled; keep it small)."""
        raise NotImplementedError

    def allgather_object(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every rank immediately (used when one rank fails)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rank={self.rank}, size={self.size}, "
                f"local_rank={self.local_rank}, local_size={self.local_size})")


class SingleProcessCommunicator(Communicator):
    """One process: every collective is the identity (the default, and ``--distributed`` without mpiexec)."""

    name = "single"

    def allreduce(self, buffer):
        _check_flat(buffer)
        return buffer

    def broadcast(self, array, root: int = 0):
        _check_root(root, self.size)
        return array

    def broadcast_object(self, obj, root: int = 0):
        _check_root(root, self.size)
        return obj

    def allgather_object(self, obj) -> list:
        return [obj]

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        os._exit(code)


def _check_flat(buffer) -> None:
    if buffer.ndim != 1 or not buffer.flags.c_contiguous:
        raise ValueError(f"allreduce expects a contiguous 1-D buffer, got shape {buffer.shape}")


def _check_root(root: int, size: int) -> None:
    if not 0 <= root < size:
        raise ValueError(f"root {root} is not a rank of a communicator of size {size}")
