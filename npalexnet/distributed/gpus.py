"""One GPU per local rank: the choice every GPU communicator makes when it starts."""

from __future__ import annotations

from .communicator import Communicator, DistributedSetupError


def select_local_gpu(comm: Communicator) -> int:
    """Make GPU ``local_rank`` current (checked on all ranks together); returns its number.

    Raises the same DistributedSetupError on every rank when a machine runs
    more ranks than it has GPUs.
    """
    try:
        import cupy

        gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception:   # noqa: BLE001 (no CuPy, no driver, a broken CUDA install: all mean no GPU)
        cupy, gpus = None, 0
    counts = comm.allgather_object((gpus, comm.local_size))
    short = [(r, g, ls) for r, (g, ls) in enumerate(counts) if g < ls]
    if short:
        rank, gpus_seen, local = short[0]
        raise DistributedSetupError(
            f"{local} ranks run on the machine of rank {rank}, which sees {gpus_seen} GPU(s): one GPU "
            f"per local rank is needed; start at most {gpus_seen} processes per machine or use --device cpu")
    cupy.cuda.Device(comm.local_rank).use()
    return comm.local_rank
