"""Gradient averaging in one fused buffer, weighted by each rank's share of the batch.

Notation: R ranks; rank r holds n_r of the N = sum_r n_r samples of the global
batch; g_r is the gradient of rank r's loss, the *mean* over its n_r samples.

The gradient of the global mean loss is

.. math:: g = \\frac1N \\sum_{i=1}^{N} \\nabla\\ell_i
            = \\sum_r \\frac{n_r}{N}\\, g_r ,

so each rank scales its gradient by its share n_r/N and the ranks *sum*.
With equal shares this is the plain average of Horovod and ChainerMN; with
an uneven last batch (or a batch that does not divide by R) it stays exact,
where a plain average would over-weight the samples of the smaller ranks.

All gradients travel in one preallocated flat buffer (one collective per
step instead of one per parameter: the latency of a collective dominates for
the small tensors, biases above all). Packing multiplies by the share on the
way in, unpacking points each ``Parameter.grad`` at its slice of the buffer
(no copy back).
"""

from __future__ import annotations

import time

import numpy

from ..backend import get_array_module, is_cupy_array
from ..nn.module import Module, Parameter
from .communicator import Communicator


def shares(counts) -> list[float]:
    """``n_r / N`` for a list of per-rank sample counts (all zeros: all zeros)."""
    total = sum(int(c) for c in counts)
    return [int(c) / total if total else 0.0 for c in counts]


class FusedBuffer:
    """One flat array holding a list of same-dtype arrays back to back.

    ``offsets[k]:offsets[k+1]`` is array ``k``'s slice; ``views[k]`` is that
    slice with array ``k``'s shape.
    """

    def __init__(self, shapes, dtype, xp):
        sizes = [int(numpy.prod(s, dtype=numpy.int64)) for s in shapes]
        self.offsets = numpy.concatenate([[0], numpy.cumsum(sizes, dtype=numpy.int64)]).tolist()
        self.flat = xp.zeros(self.offsets[-1], dtype=dtype)
        self.views = [self.flat[a:b].reshape(shape)
                      for a, b, shape in zip(self.offsets[:-1], self.offsets[1:], shapes)]

    def __len__(self) -> int:
        return len(self.views)


class GradientAverager:
    """Averages the parameter gradients of ``params`` across the ranks of ``comm``.

    Usage, once per step, between ``backward`` and ``optimizer.step()``::

        averager = GradientAverager(model.parameters(), comm)   # once
        ...
        model.backward(loss_fn.backward())
        averager.average(local_count=n_r, global_count=N)
        optimizer.step()

    A rank with no samples in a step (``local_count == 0``, possible when the
    last global batch is smaller than the number of ranks) skips forward and
    backward and still calls ``average``: its missing gradients count as zeros.

    Attributes:
        buffer: the :class:`FusedBuffer` (allocated on first use, on the
            parameters' device, in their dtype).
        last_seconds: how long the last allreduce took (benchmarks read it): wall time for host
            buffers; for device buffers the time between two CUDA events recorded around it on the
            stream (NCCL returns once the reduction is queued, so a host clock would measure the
            queueing). Reading it then waits for the reduction to finish; training never reads it.
    """

    def __init__(self, params, comm: Communicator):
        if isinstance(params, Module):
            params = params.parameters()
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ValueError("GradientAverager: no parameters")
        dtypes = {numpy.dtype(p.dtype) for p in self.params}
        if len(dtypes) != 1:
            raise TypeError(f"GradientAverager: parameters of several dtypes {sorted(map(str, dtypes))}; "
                            "cast the model with .astype() first")
        self.comm = comm
        self.buffer: FusedBuffer | None = None
        self._seconds = 0.0
        self._events = None   # (start, stop) CUDA events of the last allreduce of a device buffer

    def _ensure_buffer(self) -> FusedBuffer:
        xp = get_array_module(self.params[0].data)
        if (self.buffer is None or get_array_module(self.buffer.flat) is not xp
                or self.buffer.flat.dtype != self.params[0].dtype):   # the model moved or was cast
            self.buffer = FusedBuffer([p.shape for p in self.params], self.params[0].dtype, xp)
        return self.buffer

    def pack(self, weight: float) -> None:
        """Copy ``weight * grad`` of every parameter into the buffer (zeros for ``grad is None``)."""
        buf = self._ensure_buffer()
        scale = buf.flat.dtype.type(weight)
        for p, view in zip(self.params, buf.views):
            if p.grad is None:
                view[...] = 0
            else:
                xp = get_array_module(view)
                xp.multiply(p.grad, scale, out=view)

    def unpack(self) -> None:
        """Point every parameter's ``.grad`` at its slice of the reduced buffer."""
        for p, view in zip(self.params, self.buffer.views):
            p.grad = view

    def average(self, local_count: int, global_count: int) -> None:
        """Replace each rank's gradient by ``sum_r (n_r/N) g_r`` (see the module doc).

        Args:
            local_count: n_r, the samples this rank's loss averaged over.
            global_count: N, the samples of the global batch (the same on every rank).
        """
        if not 0 <= local_count <= global_count or global_count < 1:
            raise ValueError(f"GradientAverager.average: local_count {local_count} and "
                             f"global_count {global_count} must satisfy 0 <= n_r <= N, N >= 1")
        if self.comm.size == 1:   # one process holds the whole batch: its gradient is the average
            if local_count != global_count:
                raise ValueError(f"GradientAverager.average: one process holds {local_count} of a batch of "
                                 f"{global_count} samples")
            return
        self.pack(local_count / global_count)
        flat = self.buffer.flat
        if is_cupy_array(flat):
            cuda = get_array_module(flat).cuda
            self._events = (cuda.Event(), cuda.Event())
            self._events[0].record()
            self.comm.allreduce(flat)
            self._events[1].record()
        else:
            start = time.perf_counter()
            self.comm.allreduce(flat)
            self._seconds, self._events = time.perf_counter() - start, None
        self.unpack()

    @property
    def last_seconds(self) -> float:
        """Seconds the last allreduce took (see the class docstring)."""
        if self._events is not None:
            start, stop = self._events
            stop.synchronize()
            self._seconds = get_array_module(self.buffer.flat).cuda.get_elapsed_time(start, stop) / 1000.0
            self._events = None
        return self._seconds
