"""The per-step glue of data-parallel training, for a training loop to call.

One training step on R ranks, for a global batch B of N sample indices
(identical on every rank, see :mod:`npalexnet.data.sampling`)::

    parallel = DataParallel(model, comm)          # once, after building the model
    parallel.broadcast_initial_state()            # rank 0's weights everywhere
    ...
    mine = parallel.local_batch(B)                # this rank's n_r indices
    loss_sum, correct = train_step(model, loss_fn, optimizer, x[mine], y[mine], mine,
                                   seed=seed, epoch=epoch, parallel=parallel, global_count=len(B))

:func:`train_step` runs forward and backward under
:func:`npalexnet.random_streams.sample_keys` (dropout keyed by global sample
index), averages the gradients with the ranks' shares (one fused allreduce)
and BatchNorm's running statistics, and takes the optimizer step. With
``parallel=None`` it is the same step in one process, which is what the
equivalence test compares against.
"""

from __future__ import annotations

import numpy

from .. import random_streams
from ..backend import get_array_module
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


def train_step(model: Module, loss_fn: Module, optimizer, images, labels, indices, *, seed: int,
               epoch: int, parallel: DataParallel | None = None, global_count: int | None = None):
    """One optimisation step on this rank's part of a global batch.

    Args:
        model, loss_fn, optimizer: the network, a mean-reduced loss, an npalexnet optimizer.
        images: (n_r, C, H, W) this rank's samples, on the model's device (n_r may be 0).
        labels: (n_r,) integer class indices.
        indices: (n_r,) host integer array, the samples' global indices (dropout keys).
        seed, epoch: the keys of the counter-based random numbers.
        parallel: the :class:`DataParallel` state, or None for one process.
        global_count: N, the size of the global batch (default ``n_r``).
    Returns:
        ``(loss * n_r, correct)`` for this rank, as Python numbers (sum them over
        ranks with :func:`~npalexnet.distributed.state.allreduce_sums`).
    """
    n_local = len(indices)
    global_count = n_local if global_count is None else int(global_count)
    optimizer.zero_grad()
    loss_sum, correct = 0.0, 0
    if n_local:
        with random_streams.sample_keys(numpy.asarray(indices), seed, epoch):
            logits = model(images)
            loss = loss_fn(logits, labels)
        model.backward(loss_fn.backward(), input_grad=False)
        xp = get_array_module(logits)
        loss_sum = float(loss) * n_local
        correct = int((xp.argmax(logits, axis=1) == labels).sum())
    if parallel is not None:
        parallel.synchronize(n_local, global_count)
    elif n_local != global_count:
        raise ValueError(f"train_step: one process got {n_local} samples of a global batch of {global_count}")
    optimizer.step()
    return loss_sum, correct
