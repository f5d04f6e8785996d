"""The NCCL communicator: the dtype table without a GPU, the collectives on one (marked gpu)."""

import json
from types import SimpleNamespace

import numpy
import pytest

from npalexnet.distributed.nccl import _nccl_dtype, nccl_available

from .helpers import run_mpi


def test_nccl_dtype_table():
    fake = SimpleNamespace(NCCL_FLOAT16=6, NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_INT32=2, NCCL_INT64=4,
                           NCCL_UINT8=1)
    assert _nccl_dtype(fake, numpy.float32) == 7 and _nccl_dtype(fake, "float64") == 8
    with pytest.raises(TypeError, match="complex"):
        _nccl_dtype(fake, numpy.complex64)


def test_nccl_available_is_a_bool():
    assert nccl_available() in (True, False)


@pytest.mark.gpu
@pytest.mark.slow
def test_nccl_collectives_and_a_data_parallel_step_on_the_gpu(tmp_path):
    """One rank per visible GPU is all CI has; the NCCL calls and the CuPy step are what is checked."""
    import cupy

    ranks = min(cupy.cuda.runtime.getDeviceCount(), 2)
    out = tmp_path / "nccl.json"
    result, _ = run_mpi(ranks, "nccl", out, env_extra={"NPALEXNET_DEVICE": "cuda"}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["name"] == ("nccl" if nccl_available() else "mpi")
    assert report["allreduce_ok"] and report["broadcast_ok"]
    assert report["max_rel_error"] < 1e-10
