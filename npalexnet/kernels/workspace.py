"""Scratch arrays a layer keeps from one step to the next.

A convolution of the CIFAR net writes a 28 MB im2col matrix every step. A
fresh array of that size costs more than filling it: glibc hands large
allocations back to the operating system when they are freed, so every step
pays first-touch page faults on the new one (measured: a fresh 150 MB array
costs 16 ms here, as long as the GEMM that reads it). A layer therefore keeps
its large private buffers (never returned to the caller) in a ``Workspace``
and reuses them while the shapes stay the same.
"""

from __future__ import annotations

from ..backend import get_array_module


class Workspace:
    """Named buffers, reallocated only when the shape, dtype or device changes."""

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays = {}

    def get(self, name: str, shape, dtype, like):
        """A C-contiguous array ``shape``/``dtype`` on the device of ``like`` (contents undefined)."""
        xp = get_array_module(like)
        shape = tuple(int(d) for d in shape)
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype or type(array) is not xp.ndarray:
            array = xp.empty(shape, dtype=dtype)
            self._arrays[name] = array
        return array

    def clear(self) -> None:
        """Drop every buffer (after a move to another device or dtype)."""
        self._arrays.clear()

    def nbytes(self) -> int:
        """Bytes held."""
        return sum(a.nbytes for a in self._arrays.values())
