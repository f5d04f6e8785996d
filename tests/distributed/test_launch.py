"""Start-up: mpi4py missing, disagreeing ranks, GPU checks, the abort hook."""

import sys

import numpy
import pytest

from npalexnet import backend, distributed
from npalexnet.distributed import DistributedSetupError, SingleProcessCommunicator

from .helpers import RecordingCommunicator


def test_distributed_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)      # import mpi4py now raises ImportError
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(DistributedSetupError, match=r"mpi4py.*pip install -e \"\.\[mpi\]\""):
        distributed.init(True, "cpu")
    assert not distributed.mpi.mpi_available()


def test_check_consistent_names_the_rank_and_the_fact():
    distributed.check_consistent(SingleProcessCommunicator(), npalexnet="0.1.0", data="/a")

    class Disagreeing(RecordingCommunicator):
        def allgather_object(self, obj):
            return [obj, {**obj, "data": "/b"}]

    with pytest.raises(DistributedSetupError, match="data: rank 0 has '/a', rank 1 has '/b'"):
        distributed.check_consistent(Disagreeing(0, 2), npalexnet="0.1.0", data="/a")


def test_select_local_gpu_without_enough_gpus():
    if backend.cupy_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DistributedSetupError, match="one GPU per local rank"):
        distributed.select_local_gpu(RecordingCommunicator(0, 2))


def test_nccl_needs_cuda():
    with pytest.raises(DistributedSetupError, match="--device cuda"):
        distributed.init(True, "cpu", backend="nccl")


def test_report_setup_error_prints_on_rank_0_only(capsys):
    assert distributed.report_setup_error(DistributedSetupError("boom"), RecordingCommunicator(1, 2)) == 2
    assert capsys.readouterr().err == ""
    distributed.report_setup_error(DistributedSetupError("boom"), RecordingCommunicator(0, 2))
    assert capsys.readouterr().err == "error: boom\n"


def test_launcher_rank_reads_the_environment(monkeypatch):
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launcher_rank() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    assert distributed.launcher_rank() == 3


def test_run_turns_setup_errors_into_exit_status_2(capsys, monkeypatch):
    monkeypatch.delenv("PMI_RANK", raising=False)

    def main():
        raise DistributedSetupError("ranks disagree")

    with pytest.raises(SystemExit) as exit_info:
        distributed.run(main)
    assert exit_info.value.code == 2 and "ranks disagree" in capsys.readouterr().err
    assert distributed.run(lambda a: a + 1, 1) == 2


def test_abort_hook_is_a_no_op_for_one_process(monkeypatch):
    hook = sys.excepthook
    distributed.install_abort_on_exception(SingleProcessCommunicator())
    assert sys.excepthook is hook


def test_abort_hook_aborts(monkeypatch, capsys):
    aborted = []

    class Comm(RecordingCommunicator):
        def abort(self, code=1):
            aborted.append(code)

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    distributed.install_abort_on_exception(Comm(1, 2))
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    assert aborted == [1]
    assert "[rank 1/2]" in capsys.readouterr().err and numpy is not None
