"""Shared by the distributed tests: simulated ranks in one process, and the mpiexec runner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from npalexnet.distributed import Communicator

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "mpi_worker.py"


class RecordingCommunicator(Communicator):
    """Rank ``rank`` of ``size``: ``allreduce`` records the buffer instead of reducing it.

    Lets a test play every rank in one process: pack on each, sum the
    recorded buffers by hand, compare with one process.
    """

    name = "recording"

    def __init__(self, rank, size):
        super().__init__(rank, size)
        self.sent = []

    def allreduce(self, buffer):
        self.sent.append(buffer.copy())
        return buffer

    def broadcast(self, array, root=0):
        return array

    def broadcast_object(self, obj, root=0):
        return obj

    def allgather_object(self, obj):
        return [obj] * self.size

    def barrier(self):
        return None


def mpiexec() -> str:
    """The mpiexec next to this Python (the mpich wheel's), else on PATH; skips when neither."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip('mpi4py is not installed (pip install -e ".[mpi]")')
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if not found:
        pytest.skip("no mpiexec found (the mpich wheel provides one: pip install mpich)")
    return found


def run_mpi(ranks: int, *args, timeout: float = 120, env_extra: dict | None = None):
    """``mpiexec -n ranks python mpi_worker.py *args`` with a hard timeout; returns (result, seconds)."""
    return mpirun(["-n", ranks, sys.executable, WORKER, *args], timeout=timeout, env_extra=env_extra)


def mpirun(arguments, timeout: float = 120, env_extra: dict | None = None, cwd=ROOT):
    """``mpiexec *arguments`` (one BLAS thread per rank) with a hard timeout; returns (result, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NPALEXNET_DEVICE="cpu")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Open MPI refuses to start as root unless told twice; GPU machines and containers often run as root.
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.update(env_extra or {})
    command = [mpiexec(), *map(str, arguments)]
    start = time.perf_counter()
    # A session of its own, so that a timeout kills mpiexec *and* every rank it started.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=cwd, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command)} did not finish in {timeout} s (a rank hangs):\n{stdout}\n{stderr}")
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return result, time.perf_counter() - start


def checkpoint_weights(path):
    """The model's parameters and buffers in a checkpoint, as float64 arrays by name."""
    import numpy
    with numpy.load(path) as z:
        return {k: z[k].astype(numpy.float64) for k in z.files if k.startswith("model/")}
