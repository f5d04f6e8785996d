"""The single-process communicator: every collective is the identity."""

import numpy
import pytest

from npalexnet import distributed
from npalexnet.distributed import SingleProcessCommunicator


def test_single_process_collectives_are_identities(xp):
    comm = SingleProcessCommunicator()
    assert (comm.rank, comm.size, comm.local_rank, comm.local_size, comm.is_root) == (0, 1, 0, 1, True)
    buf = xp.arange(5, dtype=xp.float64)
    assert comm.allreduce(buf) is buf
    numpy.testing.assert_array_equal(numpy.asarray(buf.tolist()), numpy.arange(5))
    assert comm.broadcast(buf) is buf
    assert comm.broadcast_object({"a": 1}) == {"a": 1}
    assert comm.allgather_object(3) == [3]
    comm.barrier()


def test_single_process_checks_its_arguments():
    comm = SingleProcessCommunicator()
    with pytest.raises(ValueError, match="1-D"):
        comm.allreduce(numpy.zeros((2, 2)))
    with pytest.raises(ValueError, match="root 1"):
        comm.broadcast(numpy.zeros(2), root=1)


def test_init_without_distributed_is_single_process():
    comm = distributed.init(False)
    assert isinstance(comm, SingleProcessCommunicator) and comm.name == "single"
    with pytest.raises(ValueError, match="backend"):
        distributed.init(False, backend="gloo")
