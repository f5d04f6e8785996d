"""One source for two devices: NumPy on the CPU, CuPy on an NVIDIA GPU.

Every layer starts from ``xp = get_array_module(x)`` and writes its math
against ``xp``; nothing inside a layer names ``numpy`` for data, so the same
forward and backward run on both devices and no array silently crosses
between host and device.

The device is chosen by the user:

* ``npalexnet.set_device("cpu" | "cuda" | "auto")``, or
* the environment variable ``NPALEXNET_DEVICE=cpu|cuda|auto``.

``auto`` means CuPy when it imports and sees a GPU, else NumPy. Modules are
built on the CPU (so a seed gives the same initial weights on both devices)
and moved with ``module.to(device)``.

Randomness: ``manual_seed(seed)`` seeds every random source the library uses
(the NumPy generator used for initialisation and CPU dropout/augmentation,
and CuPy's generator when CuPy is present).
"""

from __future__ import annotations

import os

import numpy

DEVICES = ("cpu", "cuda")
ENV_VAR = "NPALEXNET_DEVICE"

_CUPY_INSTALL_HINT = (
    "install CuPy for your CUDA version, e.g. `pip install cupy-cuda12x` "
    "(or `pip install -e \".[gpu]\"`), on a machine with an NVIDIA GPU"
)

_cupy = None
_cupy_checked = False
_cupy_error: str | None = None


def _import_cupy():
    """Import CuPy once; remember why it failed so errors can say so."""
    global _cupy, _cupy_checked, _cupy_error
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: PLC0415 (optional dependency)

            if cupy.cuda.runtime.getDeviceCount() < 1:
                _cupy_error = "CuPy is installed but sees no CUDA GPU"
            else:
                _cupy = cupy
        except ImportError:
            _cupy_error = "CuPy is not installed"
        except Exception as exc:  # CUDA driver or runtime missing
            _cupy_error = f"CuPy could not use a GPU ({type(exc).__name__}: {exc})"
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports and at least one CUDA GPU is visible."""
    return _import_cupy() is not None


def get_array_module(*arrays):
    """The array module (``numpy`` or ``cupy``) that owns ``arrays``.

    Mixing devices is a bug in the caller, so it raises instead of copying.
    """
    if _cupy is None:
        # CuPy never imported successfully, so nothing can be a CuPy array
        # (checked without importing CuPy: import is slow and may fail).
        return numpy
    kinds = {isinstance(a, _cupy.ndarray) for a in arrays if a is not None}
    if kinds == {True}:
        return _cupy
    if kinds == {True, False}:
        raise TypeError("arrays live on different devices (some NumPy, some CuPy); "
                        "move the module or the data with .to(device) first")
    return numpy


def resolve_device(device: str | None = None) -> str:
    """Turn ``"cpu" | "cuda" | "auto" | None`` into ``"cpu"`` or ``"cuda"``.

    ``None`` reads ``NPALEXNET_DEVICE`` (default ``auto``). Asking for
    ``cuda`` where it cannot work raises a RuntimeError saying what to install.
    """
    if device is None:
        device = _default_device or os.environ.get(ENV_VAR, "auto")
    name = str(device).strip().lower()
    if name.startswith("cuda:"):
        name = "cuda"
    if name == "auto":
        return "cuda" if cupy_available() else "cpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'auto'")
    if name == "cuda" and not cupy_available():
        raise RuntimeError(f"device 'cuda' was requested but {_cupy_error}; {_CUPY_INSTALL_HINT}")
    return name


_default_device: str | None = None


def set_device(device: str | None) -> str:
    """Set the library's default device (``None`` goes back to the env variable).

    Returns the resolved device. The training loop and data pipeline put
    their arrays there; modules still move explicitly with ``.to()``.
    """
    global _default_device
    resolved = resolve_device(device)
    _default_device = None if device is None else resolved
    return resolved


def get_device() -> str:
    """The resolved default device: ``"cpu"`` or ``"cuda"``."""
    return resolve_device(None)


def xp_for(device: str):
    """The array module that holds arrays of ``device``."""
    return _import_cupy() if resolve_device(device) == "cuda" else numpy


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cuda" if get_array_module(array) is not numpy else "cpu"


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (a no-op when it is already there)."""
    target = resolve_device(device)
    if target == "cuda":
        return _import_cupy().asarray(array)
    return asnumpy(array)


def asnumpy(array):
    """A NumPy array from a NumPy array, a CuPy array or a torch tensor."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    if type(array).__module__.startswith("torch"):
        return array.detach().cpu().numpy()
    return numpy.asarray(array)


# ----------------------------------------------------------------------------
# Random numbers
# ----------------------------------------------------------------------------

_host_rng = numpy.random.default_rng()
_device_rng = None


def manual_seed(seed: int) -> None:
    """Seed every random source of the library, on both backends."""
    global _host_rng, _device_rng
    _host_rng = numpy.random.default_rng(seed)
    _device_rng = None
    if _import_cupy() is not None:
        _device_rng = _cupy.random.default_rng(seed)


def rng(xp=numpy):
    """The library's random generator for arrays of module ``xp``."""
    global _device_rng
    if xp is numpy:
        return _host_rng
    if _device_rng is None:
        _device_rng = xp.random.default_rng(int(_host_rng.integers(2**63)))
    return _device_rng


def get_rng_state() -> dict:
    """The host generator's state (a JSON-serialisable dict) for checkpoints."""
    return _host_rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state from :func:`get_rng_state`."""
    _host_rng.bit_generator.state = state
