"""The one switch for the hand-written CUDA kernels (:mod:`.cuda_kernels`).

The kernels replace the array code of im2col/col2im, max-pooling, LRN, and
the ReLU and dropout element-wise work *for CuPy arrays only*; NumPy arrays
always take the CPU path. They are **off by default**: CuPy RawKernel code
cannot run without a GPU, so until a run on a real GPU has proven them
against the array code (``benchmarks/gpu_all.sh``) the CuPy backend runs the
array-code path, which the CPU tests cover.

Switch them on with either

* the environment variable ``NPALEXNET_CUDA_KERNELS=1`` (read at every
  call, so it can be set after import; ``1/true/yes/on`` or
  ``0/false/no/off/''``, anything else is a ValueError), or
* ``npalexnet.kernels.use_cuda_kernels(True)`` (``False`` forces them off,
  ``None`` goes back to the environment variable).

Without CuPy: ``use_cuda_kernels(True)`` raises a RuntimeError saying why
(an explicit request that cannot be honoured should not pass silently);
the environment variable alone changes nothing, because there are no CuPy
arrays to dispatch (so a shared environment file cannot break CPU runs).
"""

from __future__ import annotations

import os

ENV_VAR = "NPALEXNET_CUDA_KERNELS"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

#: None: follow the environment variable; True/False: set by use_cuda_kernels.
_override: bool | None = None


def parse_flag(value: str | None) -> bool:
    """``NPALEXNET_CUDA_KERNELS`` as a bool; unset means False."""
    if value is None:
        return False
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{ENV_VAR}={value!r}: expected one of {_TRUE + _FALSE[:-1]} (or empty)")


def cuda_enabled() -> bool:
    """True when the CUDA kernels are switched on (they still run only on CuPy arrays)."""
    if _override is not None:
        return _override
    return parse_flag(os.environ.get(ENV_VAR))


def use_cuda_kernels(enabled: bool | None = True) -> bool:
    """Switch the CUDA kernels on (True), off (False) or back to the env variable (None).

    Returns the previous effective setting, so a caller can restore it.
    Raises RuntimeError for ``True`` when CuPy or a GPU is missing.
    """
    global _override
    previous = cuda_enabled()
    if enabled:
        from .. import backend
        if not backend.cupy_available():
            raise RuntimeError(f"use_cuda_kernels(True): {backend._cupy_error}; the CUDA kernels "
                               f"need CuPy and an NVIDIA GPU ({backend._CUPY_INSTALL_HINT})")
    _override = None if enabled is None else bool(enabled)
    return previous


def is_cupy_array(a) -> bool:
    """A CuPy ndarray, recognised without importing CuPy."""
    return type(a).__module__.startswith("cupy") and hasattr(a, "__cuda_array_interface__")


def kernels_for(x):
    """The :mod:`.cuda_kernels` module when the switch is on and ``x`` is a float32/float64
    CuPy array, else None (the caller runs its array code)."""
    if not is_cupy_array(x) or x.dtype.char not in "fd" or not cuda_enabled():
        return None
    from . import cuda_kernels
    return cuda_kernels
