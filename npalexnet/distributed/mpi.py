"""The MPI communicator (mpi4py), for NumPy arrays and, staged through the host, CuPy arrays.

mpi4py is an optional extra (``pip install -e ".[mpi]"``): nothing here is
imported before a distributed run asks for it, and asking without it gives a
:class:`DistributedSetupError` that says what to install.
"""

from __future__ import annotations

import sys

import numpy

from .communicator import Communicator, DistributedSetupError, _check_flat, _check_root

MPI_INSTALL_HINT = ('install the MPI extra: `pip install -e ".[mpi]"` (mpi4py and the mpich wheel), '
                    "or `pip install mpi4py` against your cluster's MPI")


def import_mpi():
    """``mpi4py.MPI``, initialising MPI; a DistributedSetupError when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedSetupError(f"--distributed needs mpi4py, which is not importable "
                                    f"({exc}); {MPI_INSTALL_HINT}") from exc
    return MPI


def mpi_available() -> bool:
    """True when mpi4py imports (it does not initialise MPI)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


class MPICommunicator(Communicator):
    """Collectives over ``MPI.COMM_WORLD`` (or the communicator given).

    NumPy buffers go to MPI directly (no copy). CuPy buffers are copied to the
    host, reduced there and copied back: correct with any MPI build, CUDA-aware
    or not; the :class:`~npalexnet.distributed.nccl.NCCLCommunicator` avoids
    the copies where NCCL exists.
    """

    name = "mpi"

    def __init__(self, comm=None):
        MPI = import_mpi()
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)   # the ranks sharing this machine
        super().__init__(self.comm.Get_rank(), self.comm.Get_size(), local.Get_rank(), local.Get_size())
        local.Free()

    def allreduce(self, buffer):
        _check_flat(buffer)
        if isinstance(buffer, numpy.ndarray):
            self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)
            return buffer
        host = _to_host(buffer)
        self.comm.Allreduce(self._MPI.IN_PLACE, host, op=self._MPI.SUM)
        buffer.set(host)
        return buffer

    def broadcast(self, array, root: int = 0):
        _check_root(root, self.size)
        if not array.flags.c_contiguous:
            raise ValueError("broadcast expects a contiguous array")
        if isinstance(array, numpy.ndarray):
            self.comm.Bcast(array, root=root)
            return array
        host = _to_host(array)
        self.comm.Bcast(host, root=root)
        array.set(host)
        return array

    def broadcast_object(self, obj, root: int = 0):
        _check_root(root, self.size)
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj) -> list:
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


def _to_host(array) -> numpy.ndarray:
    """A contiguous host copy of a CuPy array."""
    return numpy.ascontiguousarray(array.get())
