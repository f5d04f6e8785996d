"""Keeping the ranks' state identical: broadcast from rank 0, averaged buffers, summed metrics.

* :func:`broadcast_module` copies rank 0's parameters and buffers to every
  rank (initial weights, or the weights of a resumed checkpoint), so no rank
  depends on having drawn the same initialisation.
* :func:`broadcast_tree` does the same for any nest of dicts, lists and
  arrays: optimizer state, scheduler state, epoch, RNG state on resume. The
  structure and small values travel pickled, the arrays in place.
* :func:`average_buffers` averages floating buffers (BatchNorm's running
  mean and variance) weighted by the ranks' shares of the batch.
* :func:`allreduce_sums` sums a few numbers (loss*count, correct, count) for
  an evaluation over all ranks.
"""

from __future__ import annotations

import dataclasses

import numpy

from .. import backend
from ..backend import get_array_module
from ..nn.module import Module
from .communicator import Communicator
from .gradients import FusedBuffer


def broadcast_module(module: Module, comm: Communicator, root: int = 0) -> Module:
    """Overwrite every parameter and buffer with ``root``'s, in place; returns ``module``."""
    if comm.size == 1:
        return module
    names = comm.allgather_object([(k, tuple(v.shape), str(v.dtype))
                                   for k, v in module.state_dict().items()])
    if any(n != names[root] for n in names):
        bad = [r for r, n in enumerate(names) if n != names[root]]
        raise ValueError(f"broadcast_module: ranks {bad} hold a model whose parameters differ in "
                         f"names, shapes or dtypes from rank {root}'s")
    for _, p in module.named_parameters():
        p.data = _broadcast_array(p.data, comm, root)
    buffers = {name: _broadcast_array(value, comm, root) for name, value in module.named_buffers()
               if value is not None and hasattr(value, "shape")}
    return module.load_state_dict(buffers, strict=False)


def _broadcast_array(array, comm: Communicator, root: int):
    xp = get_array_module(array)
    target = xp.array(array, order="C", copy=True).reshape(-1)   # never write into a caller's array
    comm.broadcast(target, root)
    return target.reshape(array.shape)


class _ArraySlot:
    """A placeholder for an array inside a broadcast structure."""

    def __init__(self, index, shape, dtype, device):
        self.index, self.shape, self.dtype, self.device = index, shape, dtype, device


class _DataclassSlot:
    """A dataclass inside a broadcast structure: its type and its (stripped) fields."""

    def __init__(self, kind, fields):
        self.kind, self.fields = kind, fields


def broadcast_tree(tree, comm: Communicator, root: int = 0):
    """``root``'s nest of dicts/lists/tuples/dataclasses/arrays/scalars, returned on every rank.

    Arrays keep their device (CuPy arrays arrive as CuPy arrays on the
    receiving ranks) and are sent with the communicator's array broadcast, so
    a large optimizer state is not pickled; everything else is pickled.
    Typical use on resume: ``state = broadcast_tree(checkpoint if comm.is_root else None, comm)``.
    """
    if comm.size == 1:
        return tree
    arrays = []

    def strip(node):
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            return _DataclassSlot(type(node), {f.name: strip(getattr(node, f.name))
                                               for f in dataclasses.fields(node) if f.init})
        if isinstance(node, dict):
            return type(node)((k, strip(v)) for k, v in node.items())
        if isinstance(node, (list, tuple)):
            return type(node)(strip(v) for v in node)
        if hasattr(node, "shape") and hasattr(node, "dtype") and getattr(node, "ndim", 0) > 0:
            arrays.append(node)
            return _ArraySlot(len(arrays) - 1, tuple(node.shape), str(node.dtype), backend.device_of(node))
        return node

    skeleton = comm.broadcast_object(strip(tree) if comm.rank == root else None, root)

    def fill(node):
        if isinstance(node, _DataclassSlot):
            return node.kind(**{name: fill(value) for name, value in node.fields.items()})
        if isinstance(node, dict):
            return type(node)((k, fill(v)) for k, v in node.items())
        if isinstance(node, (list, tuple)):
            return type(node)(fill(v) for v in node)
        if isinstance(node, _ArraySlot):
            if comm.rank == root:
                array = get_array_module(arrays[node.index]).ascontiguousarray(arrays[node.index])
            else:
                xp = backend.xp_for(node.device) if node.device == "cuda" else numpy
                array = xp.empty(node.shape, dtype=node.dtype)
            return comm.broadcast(array, root)
        return node

    return fill(skeleton)


def average_buffers(module: Module, comm: Communicator, local_count: int, global_count: int) -> None:
    """Replace each floating buffer by ``sum_r (n_r/N) buffer_r`` (in place, one allreduce).

    For BatchNorm this makes the running mean exactly the running mean of the
    global batch's mean (the update is linear in the batch mean), and the
    running variance the share-weighted mean of the ranks' batch variances
    (which leaves out the spread of the ranks' means: the usual approximation
    of unsynchronised data-parallel BatchNorm, as in Horovod and ChainerMN
    without their SyncBatchNorm). Integer buffers (``num_batches_tracked``)
    advance identically on every rank and are left alone.
    """
    if comm.size == 1:
        return
    if not 0 <= local_count <= global_count or global_count < 1:
        raise ValueError(f"average_buffers: need 0 <= local_count ({local_count}) <= global_count "
                         f"({global_count}) and global_count >= 1")
    buffers = [(name, value) for name, value in module.named_buffers() if value is not None]
    floats = [(name, value) for name, value in buffers if value.dtype.kind == "f"]
    if not floats:
        return
    dtype = numpy.result_type(*[value.dtype for _, value in floats])
    fused = FusedBuffer([value.shape for _, value in floats], dtype, get_array_module(floats[0][1]))
    weight = local_count / global_count
    for (_, value), view in zip(floats, fused.views):
        view[...] = value * weight
    comm.allreduce(fused.flat)
    averaged = {name: view for (name, _), view in zip(floats, fused.views)}
    # A rank without samples in this step did not count the batch; rank 0 always has samples.
    counters = [(name, value) for name, value in buffers if value.dtype.kind in "iu" and value.ndim == 0]
    counts = comm.broadcast_object([int(value) for _, value in counters], 0)
    xp = get_array_module(floats[0][1])
    averaged.update({name: xp.asarray(count) for (name, _), count in zip(counters, counts)})
    module.load_state_dict(averaged, strict=False)   # copies, cast to each buffer's dtype


def allreduce_sums(comm: Communicator, *values: float) -> tuple[float, ...]:
    """The sums over ranks of a few numbers, in float64 (e.g. ``loss*count, correct, count``)."""
    buffer = numpy.array(values, dtype=numpy.float64)
    comm.allreduce(buffer)
    return tuple(float(v) for v in buffer)
