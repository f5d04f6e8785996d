"""A stand-in for a CuPy array on machines without a GPU, for the host/device boundary.

``npalexnet.backend`` recognises it as a device array (by its type's module
and ``__cuda_array_interface__``, as it recognises CuPy's), and, like CuPy,
it refuses to be turned into a NumPy array implicitly: ``numpy.asarray(a)``
raises TypeError, only ``a.get()`` copies it to the host. A function that
takes device arrays and reaches for ``numpy.asarray`` instead of
``backend.asnumpy`` fails on it on any machine, as it would on a GPU.

It holds a NumPy array and supports what the functions under test do before
they copy (shape, dtype, slicing); arithmetic on it is deliberately missing.
"""

from __future__ import annotations

import numpy


class FakeDeviceArray:
    """A NumPy array posing as a CuPy one (see the module docstring)."""

    __cuda_array_interface__: dict = {}

    def __init__(self, array):
        self._host = numpy.asarray(array)

    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)

    def __len__(self) -> int:
        return len(self._host)

    def __getitem__(self, key) -> FakeDeviceArray:
        return FakeDeviceArray(self._host[key])

    def get(self) -> numpy.ndarray:
        """A host copy (CuPy's ``ndarray.get``)."""
        return self._host.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")


# backend.is_cupy_array looks at the type's module, as it does for CuPy's ndarray.
FakeDeviceArray.__module__ = "cupy._core.core"
