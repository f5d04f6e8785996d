"""Scratch and output arrays a layer keeps from one step to the next.

A convolution of the CIFAR net writes a 28 MB im2col matrix every step, and
the paper net's first layers return 37 MB outputs and gradients. A fresh
array of that size costs more than filling it: glibc hands large allocations
back to the operating system when they are freed, so every step pays
first-touch page faults on the new one (measured here: a fresh 150 MB array
costs 16 ms, as long as the GEMM that reads it; all of them together were 16%
of the paper net's training step). A layer therefore keeps its large arrays
in a ``Workspace`` and reuses them while the shapes stay the same:

* :meth:`Workspace.get`: private buffers the layer alone ever sees (the
  im2col matrix, Winograd's tiles, LRN's scale), reused unconditionally;
* :meth:`Workspace.recycle`: arrays the layer returns (outputs, input
  gradients). One of these is reused only once nothing but the workspace
  refers to it any more: no caller variable, container, view or cache of
  another layer. A result a user keeps is never overwritten; it simply stops
  being recycled (the layer allocates a new one).
"""

from __future__ import annotations

import sys

from ..backend import get_array_module


class Workspace:
    """Named buffers, reallocated only when the shape, dtype or device changes."""

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays = {}

    def get(self, name: str, shape, dtype, like):
        """A private C-contiguous array ``shape``/``dtype`` on the device of ``like`` (contents undefined)."""
        array = self._arrays.get(name)
        if not _fits(array, shape, dtype, like):
            array = get_array_module(like).empty(tuple(int(d) for d in shape), dtype=dtype)
            self._arrays[name] = array
        return array

    def recycle(self, name: str, shape, dtype, like):
        """An array to return to the caller: last step's, if nobody holds it any more, else a new one."""
        if _fits(self._arrays.get(name), shape, dtype, like) and self._references(name) <= _UNHELD:
            return self._arrays[name]
        array = get_array_module(like).empty(tuple(int(d) for d in shape), dtype=dtype)
        self._arrays[name] = array
        return array

    def recycle_cn(self, name: str, shape_nchw, dtype, like):
        """:meth:`recycle` for an (N, C, ...) result in (C, N, ...) memory (the layout every layer
        passes on); returns the (N, C, ...) view."""
        n, c = shape_nchw[:2]
        return self.recycle(name, (c, n) + tuple(shape_nchw[2:]), dtype, like).swapaxes(0, 1)

    def recycle_like(self, name: str, like, dtype=None):
        """:meth:`recycle` with the shape of ``like`` and its memory layout when that is (C, N, ...)
        order (as :meth:`recycle_cn`), else C order."""
        dtype = like.dtype if dtype is None else dtype
        if like.ndim >= 2 and not like.flags.c_contiguous and like.swapaxes(0, 1).flags.c_contiguous:
            return self.recycle_cn(name, like.shape, dtype, like)
        return self.recycle(name, like.shape, dtype, like)

    def _references(self, name: str) -> int:
        array = self._arrays.get(name)
        return sys.getrefcount(array)

    def clear(self) -> None:
        """Drop every buffer (after a move to another device or dtype)."""
        self._arrays.clear()

    def nbytes(self) -> int:
        """Bytes held."""
        return sum(a.nbytes for a in self._arrays.values())


def _fits(array, shape, dtype, like) -> bool:
    return (array is not None and array.shape == tuple(shape) and array.dtype == dtype
            and type(array) is type(like))


def _unheld_count() -> int:
    """What :meth:`Workspace._references` counts for an array only the workspace holds
    (interpreters count temporary references differently, so it is measured, not assumed)."""
    probe = Workspace()
    probe._arrays["probe"] = _Probe()
    return probe._references("probe")


class _Probe:
    """A stand-in object for the calibration (no array module needed at import)."""


_UNHELD = _unheld_count()
