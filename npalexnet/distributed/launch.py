"""Start-up and failure handling for distributed runs.

* :func:`init` picks the communicator: single process without
  ``--distributed``; MPI for NumPy workers; NCCL (rank-0 id over MPI) for
  CuPy workers, or MPI with host staging when CuPy has no NCCL.
* :func:`check_consistent` compares facts every rank must agree on (package
  versions, data paths) and raises the same :class:`DistributedSetupError` on
  every rank when they do not.
* :func:`install_abort_on_exception` makes an uncaught exception on any rank
  end all ranks at once (``MPI_Abort``) instead of leaving the others blocked
  in a collective forever.
* :func:`run` wraps a script's ``main``: setup errors are printed once, by
  rank 0, and every rank exits with status 2.
"""

from __future__ import annotations

import os
import sys
import traceback

from .communicator import Communicator, DistributedSetupError, SingleProcessCommunicator
from .gpus import select_local_gpu

#: Environment variables in which MPI launchers pass the rank (MPICH/Hydra,
#: Open MPI, PMIx, Slurm), read before MPI is up (or when mpi4py is missing).
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def launcher_rank() -> int | None:
    """The rank the MPI launcher gave this process, from the environment (``None`` without one)."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def init(distributed: bool = True, device: str = "cpu", backend: str = "auto") -> Communicator:
    """The communicator for this run.

    Args:
        distributed: False gives the single-process communicator (no MPI import).
        device: ``"cpu"`` or ``"cuda"`` (resolved), the device of the arrays.
        backend: ``"auto"`` (NCCL for CUDA when available, else MPI), ``"mpi"`` or ``"nccl"``.
    Raises:
        DistributedSetupError: mpi4py missing, NCCL asked for but missing, or
            fewer GPUs on a machine than ranks on it.
    """
    if backend not in ("auto", "mpi", "nccl"):
        raise ValueError(f"distributed backend must be 'auto', 'mpi' or 'nccl', got {backend!r}")
    if not distributed:
        return SingleProcessCommunicator()
    if device != "cuda" and backend == "nccl":
        raise DistributedSetupError("the NCCL backend needs --device cuda")
    from .mpi import MPICommunicator, import_mpi

    import_mpi()
    if device != "cuda":
        return MPICommunicator()
    from .nccl import NCCLCommunicator, nccl_available

    use_nccl = backend == "nccl" or (backend == "auto" and nccl_available())
    if use_nccl:
        if not nccl_available():
            raise DistributedSetupError("the NCCL backend was requested but CuPy has no usable NCCL; "
                                        "install a CuPy wheel with NCCL or use the MPI backend")
        return NCCLCommunicator()
    comm = MPICommunicator()
    select_local_gpu(comm)
    return comm


def check_consistent(comm: Communicator, **facts) -> None:
    """Raise DistributedSetupError on every rank unless all ranks report equal ``facts``.

    Example: ``check_consistent(comm, npalexnet=__version__, numpy=numpy.__version__,
    data=os.path.abspath(args.data))``.
    """
    everyone = comm.allgather_object({k: str(v) for k, v in facts.items()})
    reference = everyone[0]
    lines = []
    for rank, mine in enumerate(everyone[1:], start=1):
        for key in reference:
            if mine.get(key) != reference[key]:
                lines.append(f"  {key}: rank 0 has {reference[key]!r}, rank {rank} has {mine.get(key)!r}")
    if lines:
        raise DistributedSetupError("the ranks disagree (every rank must run the same code on the same "
                                    "data):\n" + "\n".join(lines))


def install_abort_on_exception(comm: Communicator) -> None:
    """An uncaught exception on any rank prints its traceback (tagged with the rank) and aborts all ranks.

    ``python -m mpi4py script.py`` does the same; this covers plain
    ``python script.py`` under mpiexec. A no-op for a single process.
    """
    if comm.size == 1:
        return

    def hook(kind, value, tb):
        # One write, flushed: mpiexec forwards a rank's stderr through a pipe and tears the pipes down at
        # the abort, so a header written apart from its traceback could arrive alone.
        sys.stderr.write(f"[rank {comm.rank}/{comm.size}] uncaught exception, aborting all ranks:\n"
                         + "".join(traceback.format_exception(kind, value, tb)))
        sys.stderr.flush()
        comm.abort(1)

    sys.excepthook = hook


def report_setup_error(error: DistributedSetupError, comm: Communicator | None = None) -> int:
    """Print ``error`` once (on rank 0) and return the exit status (2) every rank should exit with."""
    rank = comm.rank if comm is not None else launcher_rank()
    if rank in (0, None):
        sys.stderr.write(f"error: {error}\n")
        sys.stderr.flush()
    return 2


def run(main, *args, **kwargs):
    """Call ``main(*args, **kwargs)``; a DistributedSetupError ends every rank cleanly with status 2.

    Setup errors are raised collectively (the same on every rank), so every rank
    leaves here together and MPI finalises normally; anything else propagates
    (to :func:`install_abort_on_exception` under MPI).
    """
    try:
        return main(*args, **kwargs)
    except DistributedSetupError as error:
        raise SystemExit(report_setup_error(error)) from None
