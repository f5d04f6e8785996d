"""A model's data-parallel state: its communicator, its fused gradient buffer, and the per-step glue.

For a global batch B of N sample indices (identical on every rank, see
:mod:`npalexnet.data.sampling`)::

    parallel = DataParallel(model, comm)          # once, after building the model
    parallel.broadcast_initial_state()            # rank 0's weights everywhere
    ...
    mine = parallel.local_batch(B)                # this rank's n_r indices
    ... forward and backward on x[mine] ...
    parallel.synchronize(len(mine), len(B))       # gradients averaged by share
    optimizer.step()

:func:`npalexnet.train.train_step` is that step (the one the training program
runs, with a one-process communicator when it trains alone: nothing then moves).
"""

from __future__ import annotations

from ..nn.module import Module
from .communicator import Communicator
from .gradients import GradientAverager
from ..data.sampling import local_slice
from .state import average_buffers, broadcast_module


class DataParallel:
    """A model's distributed state: its communicator and its fused gradient buffer."""

    def __init__(self, model: Module, comm: Communicator):
        self.model, self.comm = model, comm
        self.averager = GradientAverager(model.parameters(), comm)
        self.has_float_buffers = any(v is not None and v.dtype.kind == "f"
                                     for _, v in model.named_buffers())

    def broadcast_initial_state(self) -> None:
        """Every rank takes rank 0's parameters and buffers."""
        broadcast_module(self.model, self.comm, root=0)

    def local_batch(self, global_batch):
        """This rank's contiguous slice of the global batch."""
        return local_slice(global_batch, self.comm.rank, self.comm.size)

    def synchronize(self, local_count: int, global_count: int) -> None:
        """After backward: average gradients (and BatchNorm statistics) by share of the batch."""
        self.averager.average(local_count, global_count)
        if self.has_float_buffers:
            average_buffers(self.model, self.comm, local_count, global_count)

