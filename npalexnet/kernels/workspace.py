"""Large arrays that live from one step to the next instead of being allocated anew.

The CIFAR net writes a 28 MB im2col matrix every step, and the paper net's
first layers return 37 MB outputs and gradients. A fresh array of that size
costs more than filling it: glibc hands large allocations back to the
operating system when they are freed, so every step pays first-touch page
faults on the new ones (measured here: a fresh 150 MB array costs 16 ms, as
long as the GEMM that reads it; all of them together were 16% of the paper
net's training step). Two mechanisms avoid that:

* :class:`Workspace`: a layer's *private* buffers, which must survive from
  its forward to its backward (the im2col matrix, Winograd's transformed
  tiles, max-pool's winners). Nobody else ever sees them.
* :func:`empty` (and :func:`empty_cn`, :func:`empty_like`): every other large
  array, outputs and input gradients a layer returns and temporaries, comes
  from one pool of arrays shared by all layers, a caching allocator. A
  pooled array is handed out again only once nothing but the pool refers to
  it: no caller variable, container, view or another layer's cache (the
  reference count says so). A result a user keeps is therefore never
  overwritten; it simply stays out of the pool's reach. Arrays of the same
  size are interchangeable (reshaped), so the pool holds about what the
  step's live arrays need at their peak, as fresh allocation would; arrays
  of sizes unused for a while (an evaluation batch) are dropped.

There is one pool per process, meant for one thread at a time (as a model
is: layers keep state between forward and backward). ``POOL.clear()``
forgets every pooled array, e.g. before a long phase with other shapes.
"""

from __future__ import annotations

import sys

import numpy

from ..backend import get_array_module


class Workspace:
    """A layer's named private buffers, reallocated only when the shape, dtype or device changes."""

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays = {}

    def get(self, name: str, shape, dtype, like):
        """A C-contiguous array ``shape``/``dtype`` on the device of ``like`` (contents undefined)."""
        shape = tuple(int(d) for d in shape)
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype or type(array) is not type(like):
            array = get_array_module(like).empty(shape, dtype=dtype)
            self._arrays[name] = array
        return array

    def clear(self) -> None:
        """Drop every buffer (after a move to another device or dtype)."""
        self._arrays.clear()

    def nbytes(self) -> int:
        """Bytes held."""
        return sum(a.nbytes for a in self._arrays.values())


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
    """An uninitialised C-contiguous array from the shared pool (see the module docstring)."""
    return POOL.take(shape, dtype, like)


def empty_cn(shape_nchw, dtype, like):
    """An (N, C, ...) array in (C, N, ...) memory, the layout the layers pass on, from the pool."""
    n, c = shape_nchw[:2]
    return POOL.take((c, n) + tuple(shape_nchw[2:]), dtype, like).swapaxes(0, 1)


def empty_like(like, dtype=None):
    """An array of ``like``'s shape from the pool, in (C, N, ...) memory when ``like`` is, else C order."""
    dtype = like.dtype if dtype is None else dtype
    if like.ndim >= 2 and not like.flags.c_contiguous and like.swapaxes(0, 1).flags.c_contiguous:
        return empty_cn(like.shape, dtype, like)
    return empty(like.shape, dtype, like)
