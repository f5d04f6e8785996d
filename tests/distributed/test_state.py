"""Broadcasts, buffer averaging and metric sums with a single process or simulated ranks."""

import numpy
import pytest

import npalexnet
from npalexnet import nn, optim
from npalexnet.distributed import (
    SingleProcessCommunicator,
    allreduce_sums,
    average_buffers,
    broadcast_module,
    broadcast_tree,
)

from .helpers import RecordingCommunicator


def test_single_process_broadcasts_return_their_input():
    comm = SingleProcessCommunicator()
    model = nn.Sequential(nn.Linear(3, 2))
    assert broadcast_module(model, comm) is model
    tree = {"a": numpy.ones(3), "b": [1, (2, "x")]}
    assert broadcast_tree(tree, comm) is tree
    assert allreduce_sums(comm, 1.5, 2, 3) == (1.5, 2.0, 3.0)


def test_broadcast_tree_keeps_structure_and_arrays():
    comm = RecordingCommunicator(0, 2)    # root: arrays come back as they went
    model = nn.Sequential(nn.Linear(3, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = numpy.ones(p.shape, dtype=p.dtype)
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 4, "rng": npalexnet.random_streams.get_state()}
    got = broadcast_tree(state, comm)
    assert got["epoch"] == 4 and got["rng"] == state["rng"]
    for i, entry in state["optimizer"]["state"].items():
        numpy.testing.assert_array_equal(got["optimizer"]["state"][i]["momentum_buffer"],
                                         entry["momentum_buffer"])
    assert got["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]


def test_broadcast_module_copies_instead_of_aliasing():
    comm = RecordingCommunicator(0, 2)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm2d(2))
    before = model[0].weight.data
    broadcast_module(model, comm)
    numpy.testing.assert_array_equal(model[0].weight.data, before)
    assert model[0].weight.data is not before
    assert model[1].num_batches_tracked.shape == ()


def test_average_buffers_weights_the_running_statistics():
    bn = nn.BatchNorm2d(2)
    bn.running_mean = numpy.array([1.0, 2.0], dtype=numpy.float32)
    comm = RecordingCommunicator(1, 2)
    average_buffers(bn, comm, 1, 4)
    sent = comm.sent[0]    # running_mean then running_var, each times 1/4
    numpy.testing.assert_allclose(sent, [0.25, 0.5, 0.25, 0.25])
    with pytest.raises(ValueError):
        average_buffers(bn, comm, 5, 4)
