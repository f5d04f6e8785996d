"""The NCCL communicator: GPU buffers reduced by NCCL through CuPy, the rest over MPI.

Start-up, as ChainerMN and Horovod do it: MPI starts the processes and tells
each its rank and local rank; each process takes GPU ``local_rank``; rank 0
creates the NCCL unique id and MPI broadcasts it; every rank then joins the
NCCL communicator with it. NCCL only moves device memory, so host arrays,
Python objects, the barrier and abort stay on MPI.

Needs CuPy built with NCCL (``cupy.cuda.nccl.available``) and one GPU per
local rank; :func:`npalexnet.distributed.init` falls back to host staging over
MPI when NCCL is missing.
"""

from __future__ import annotations

import numpy

from .communicator import _check_flat, _check_root
from .gpus import select_local_gpu
from .mpi import MPICommunicator


def nccl_available() -> bool:
    """True when CuPy imports with its NCCL bindings usable."""
    try:
        from cupy.cuda import nccl
    except Exception:   # noqa: BLE001 (ImportError, or a CUDA/NCCL library that fails to load)
        return False
    return bool(getattr(nccl, "available", True))


def _nccl_dtype(nccl, dtype):
    table = {
        numpy.dtype(numpy.float16): nccl.NCCL_FLOAT16,
        numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32,
        numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64,
        numpy.dtype(numpy.int32): nccl.NCCL_INT32,
        numpy.dtype(numpy.int64): nccl.NCCL_INT64,
        numpy.dtype(numpy.uint8): nccl.NCCL_UINT8,
    }
    try:
        return table[numpy.dtype(dtype)]
    except KeyError:
        raise TypeError(f"NCCL cannot reduce arrays of dtype {dtype}") from None


class NCCLCommunicator(MPICommunicator):
    """MPI for processes and objects, NCCL for CuPy buffers.

    Each rank selects GPU ``local_rank`` before creating the NCCL
    communicator, so there must be at least ``local_size`` visible GPUs
    (checked collectively: every rank raises the same DistributedSetupError).
    Collectives are issued on the current CuPy stream; NCCL orders them with
    the kernels that produced the gradients on that stream.
    """

    name = "nccl"

    def __init__(self, comm=None):
        super().__init__(comm)
        import cupy
        from cupy.cuda import nccl

        self._cupy, self._nccl = cupy, nccl
        select_local_gpu(self)   # GPU local_rank, checked on every rank together
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.broadcast_object(uid, root=0)
        self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _is_device(self, array) -> bool:
        return isinstance(array, self._cupy.ndarray)

    def allreduce(self, buffer):
        if not self._is_device(buffer):
            return super().allreduce(buffer)
        _check_flat(buffer)
        stream = self._cupy.cuda.get_current_stream()
        self.nccl_comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size,
                                 _nccl_dtype(self._nccl, buffer.dtype), self._nccl.NCCL_SUM, stream.ptr)
        return buffer

    def broadcast(self, array, root: int = 0):
        if not self._is_device(array):
            return super().broadcast(array, root)
        _check_root(root, self.size)
        if not array.flags.c_contiguous:
            raise ValueError("broadcast expects a contiguous array")
        stream = self._cupy.cuda.get_current_stream()
        # a broadcast copies bytes, so any dtype goes as uint8
        self.nccl_comm.bcast(array.data.ptr, array.nbytes, self._nccl.NCCL_UINT8, root, stream.ptr)
        return array

    def barrier(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()
        super().barrier()

    def abort(self, code: int = 1) -> None:
        try:
            self.nccl_comm.abort()
        except Exception:   # noqa: BLE001, S110 (already broken: MPI's abort below ends every rank)
            pass
        super().abort(code)
