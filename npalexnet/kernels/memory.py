"""The allocator of the fast implementations: large arrays recycled from one step to the next.

A fresh array of tens of MB costs more than filling it on a CPU: glibc hands
large allocations back to the operating system when they are freed, so every
step would pay first-touch page faults on its im2col matrices, outputs and
gradients (benchmarks/RESULTS.md). The fast implementations therefore take
their large arrays from :func:`empty` (and :func:`empty_cn`,
:func:`empty_like`), which, when the ``buffer_pool`` setting is on
(:mod:`npalexnet.config`; the training program and the benchmarks turn it
on), hands out arrays from one pool shared by all layers, a caching
allocator; otherwise it allocates as NumPy/CuPy would.

A pooled array is handed out again only once nothing but the pool refers to
it: no caller variable, container, view, another layer's saved state or a
parameter's ``.grad`` (the reference count says so). A result a user keeps is
therefore never overwritten; it simply stays out of the pool's reach. Arrays
of the same size are interchangeable (reshaped), so the pool holds about what
the step's live arrays need at their peak, as fresh allocation would; sizes
unused for a while (an evaluation batch) are dropped. CuPy arrays are never
pooled: CuPy's own memory pool already recycles device memory.

There is one pool per process, meant for one thread at a time (as a model
is: layers keep state between forward and backward). ``POOL.clear()``
forgets every pooled array, e.g. before a long phase with other shapes.
"""

from __future__ import annotations

import sys

import numpy

from .. import config
from ..backend import get_array_module


class BufferPool:
    """The shared pool behind :func:`empty`: flat arrays by (array type, dtype, size).

    ``max_idle`` takes: a size not asked for during that many requests is
    released (its arrays not in use are dropped).
    """

    def __init__(self, max_idle: int = 4096):
        self._arrays: dict = {}      # key -> list of flat arrays
        self._last_use: dict = {}    # key -> request counter at its last use
        self._requests = 0
        self.max_idle = max_idle

    def take(self, shape, dtype, like):
        """A C-contiguous array ``shape``/``dtype`` on ``like``'s device that nobody else holds."""
        shape = tuple(int(d) for d in shape)
        size = 1
        for d in shape:
            size *= d
        key = (type(like), numpy.dtype(dtype).str, size)
        self._requests += 1
        self._last_use[key] = self._requests
        if self._requests % 256 == 0:
            self._release_idle()
        arrays = self._arrays.setdefault(key, [])
        for i in range(len(arrays)):
            if _held_elsewhere(arrays, i) == 0:
                return arrays[i].reshape(shape)
        array = get_array_module(like).empty(size, dtype=dtype)
        arrays.append(array)
        return array.reshape(shape)

    def _release_idle(self) -> None:
        for key in [k for k, t in self._last_use.items() if self._requests - t > self.max_idle]:
            arrays = self._arrays.pop(key, [])
            self._last_use.pop(key)
            # (no loop variable over the arrays: it would be one more reference)
            kept = [arrays[i] for i in range(len(arrays)) if _held_elsewhere(arrays, i)]
            if kept:   # still in use: keep tracking them so that they come back when released
                self._arrays[key], self._last_use[key] = kept, self._requests

    def clear(self) -> None:
        """Forget every pooled array (those in use stay valid; they are simply no longer reused)."""
        self._arrays.clear()
        self._last_use.clear()

    def nbytes(self) -> int:
        """Bytes of the arrays the pool holds (in use or not)."""
        return sum(a.nbytes for arrays in self._arrays.values() for a in arrays)


def _held_elsewhere(arrays: list, i: int) -> int:
    """How many references to ``arrays[i]`` exist besides the pool's own list slot."""
    return sys.getrefcount(arrays[i]) - _POOL_ONLY


def _pool_only_count() -> int:
    """``sys.getrefcount`` of a list element that nothing else refers to, measured the way
    :func:`_held_elsewhere` asks (interpreters count temporaries differently)."""
    probe = [object()]
    return sys.getrefcount(probe[0])


_POOL_ONLY = _pool_only_count()

#: The pool all layers share.
POOL = BufferPool()


def empty(shape, dtype, like):
    """An uninitialised C-contiguous array on ``like``'s device: from the shared pool when the
    ``buffer_pool`` setting is on and ``like`` is a NumPy array, else newly allocated."""
    if type(like) is numpy.ndarray and config.current().buffer_pool:
        return POOL.take(shape, dtype, like)
    return get_array_module(like).empty(tuple(int(d) for d in shape), dtype=dtype)


def empty_cn(shape_nchw, dtype, like):
    """An (N, C, ...) array in (C, N, ...) memory, the layout the fast paths pass on (see :func:`empty`)."""
    n, c = shape_nchw[:2]
    return empty((c, n) + tuple(shape_nchw[2:]), dtype, like).swapaxes(0, 1)


def empty_like(like, dtype=None):
    """An array of ``like``'s shape from the pool, in (C, N, ...) memory when ``like`` is, else C order."""
    dtype = like.dtype if dtype is None else dtype
    if like.ndim >= 2 and not like.flags.c_contiguous and like.swapaxes(0, 1).flags.c_contiguous:
        return empty_cn(like.shape, dtype, like)
    return empty(like.shape, dtype, like)
