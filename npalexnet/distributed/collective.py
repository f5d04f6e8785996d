"""Doing a step on some ranks without leaving the others behind.

A rank that raises while the others wait in a collective hangs the run. The
helpers here run a step where it belongs (rank 0 alone, or rank 0 first) and
then tell every rank how it went, so an error is raised on all ranks at once
and they leave together.
"""

from __future__ import annotations

from .communicator import Communicator, DistributedSetupError
from .state import allreduce_sums, broadcast_tree


def _root_alone(comm: Communicator, fn, *args, **kwargs):
    """``fn`` on rank 0 alone; its exception, if any, raised on every rank. Rank 0's result (None elsewhere)."""
    result, error = None, None
    if comm.is_root:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:   # noqa: BLE001 (re-raised below, on every rank)
            error = exc
    error = comm.broadcast_object(error, 0)
    if error is not None:
        raise error
    return result


def on_root(comm: Communicator, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0, its result broadcast to every rank.

    An exception on rank 0 is raised on every rank (the same object, pickled).
    Arrays in the result (dicts/lists/tuples of them) travel as arrays, not
    pickles (see :func:`~npalexnet.distributed.state.broadcast_tree`).
    """
    if comm.size == 1:
        return fn(*args, **kwargs)
    return broadcast_tree(_root_alone(comm, fn, *args, **kwargs), comm)


def root_first(comm: Communicator, fn, *args, **kwargs):
    """``fn`` on rank 0, then on the other ranks (e.g. a download, then reading the files).

    Each rank returns its own result. An exception on rank 0 is raised on
    every rank before the others start; an exception on another rank is
    raised there and a DistributedSetupError naming it on the rest.
    """
    if comm.size == 1:
        return fn(*args, **kwargs)
    result, error = _root_alone(comm, fn, *args, **kwargs), None
    if not comm.is_root:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:   # noqa: BLE001 (re-raised below, on every rank)
            error = exc
    errors = comm.allgather_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        raise DistributedSetupError("; ".join(f"rank {r} failed: {e}" for r, e in failed))
    return result


def any_rank(comm: Communicator, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. Ctrl-C seen by one rank)."""
    if comm.size == 1:
        return bool(flag)
    return allreduce_sums(comm, 1.0 if flag else 0.0)[0] > 0
