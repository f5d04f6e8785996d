"""One source for two devices: NumPy on the CPU, CuPy on an NVIDIA GPU.

Every layer starts from ``xp = get_array_module(x)`` and writes its math
against ``xp``: the reference code of every layer runs unchanged on both
devices, and no array silently crosses between host and device inside a
layer. (Faster implementations of some layers exist per device; they sit
below one seam, :mod:`npalexnet.kernels`.)

The default device is a setting (:mod:`npalexnet.config`, ``device``;
``NPALEXNET_DEVICE``): ``npalexnet.set_device("cpu" | "cuda" | "cuda:N" |
"auto")``. ``auto`` means CuPy when it imports and sees a GPU, else NumPy.
Modules are built on the CPU (so a seed gives the same initial weights on
both devices) and moved with ``module.to(device)``.
"""

from __future__ import annotations

import sys

import numpy

from . import config

CUPY_INSTALL_HINT = (
    "install CuPy for your CUDA version, e.g. `pip install cupy-cuda12x` or `pip install cupy-cuda13x` "
    "(or `pip install -e \".[gpu]\"`), on a machine with an NVIDIA GPU"
)


class _CuPy:
    """CuPy, imported once on first need; ``error`` says why it is unusable (None when usable)."""

    module = None
    error: str | None = None
    checked = False

    @classmethod
    def load(cls):
        if not cls.checked:
            cls.checked = True
            try:
                import cupy  # noqa: PLC0415 (optional dependency)

                if cupy.cuda.runtime.getDeviceCount() < 1:
                    cls.error = "CuPy is installed but sees no CUDA GPU"
                else:
                    cls.module = cupy
            except ImportError:
                cls.error = "CuPy is not installed"
            except Exception as exc:  # CUDA driver or runtime missing
                cls.error = f"CuPy could not use a GPU ({type(exc).__name__}: {exc})"
        return cls.module


def cupy_available() -> bool:
    """True when CuPy imports and at least one CUDA GPU is visible."""
    return _CuPy.load() is not None


def cupy_unavailable_reason() -> str:
    """Why CuPy cannot be used here ('' when it can), with the install hint."""
    return "" if cupy_available() else f"{_CuPy.error}; {CUPY_INSTALL_HINT}"


def is_cupy_array(a) -> bool:
    """A CuPy ndarray, recognised without importing CuPy."""
    return type(a).__module__.startswith("cupy") and hasattr(a, "__cuda_array_interface__")


def get_array_module(*arrays):
    """The array module (``numpy`` or ``cupy``) that owns ``arrays``.

    A CuPy array is recognised by its type, so this is right even when the
    caller imported CuPy itself and nothing in npalexnet has yet. Mixing
    devices is a bug in the caller, so it raises instead of copying.
    """
    kinds = {is_cupy_array(a) for a in arrays if a is not None}
    if kinds == {True}:
        return sys.modules["cupy"]
    if kinds == {True, False}:
        raise TypeError("arrays live on different devices (some NumPy, some CuPy); "
                        "move the module or the data with .to(device) first")
    return numpy


def resolve_device(device: str | None = None) -> str:
    """Turn ``"cpu" | "cuda" | "cuda:N" | "auto" | None`` into ``"cpu"`` or ``"cuda"``.

    ``None`` is the configured default (``NPALEXNET_DEVICE``, else ``auto``).
    ``cuda:N`` makes GPU N the current device (CuPy allocates there from then
    on) or raises when there is no GPU N. Asking for ``cuda`` where it cannot
    work raises a RuntimeError saying what to install.
    """
    if device is None:
        device = config.current().device
    name = str(device).strip().lower()
    if name == "auto":
        return "cuda" if cupy_available() else "cpu"
    index = None
    if name.startswith("cuda:"):
        try:
            index = int(name[5:])
        except ValueError:
            raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
        name = "cuda"
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if name == "cuda":
        cupy = _CuPy.load()
        if cupy is None:
            raise RuntimeError(f"device {device!r} was requested but {cupy_unavailable_reason()}")
        if index is not None:
            count = cupy.cuda.runtime.getDeviceCount()
            if not 0 <= index < count:
                raise ValueError(f"device {device!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
            cupy.cuda.Device(index).use()
    return name


def set_device(device: str | None) -> str:
    """Set the library's default device (``None``: back to ``NPALEXNET_DEVICE`` or auto).

    Returns the resolved device. The training loop and data pipeline put
    their arrays there; modules still move explicitly with ``.to()``.
    """
    resolved = resolve_device(device)
    config.set_defaults(device=config.environment_defaults().device if device is None
                        else str(device).strip().lower())
    return resolved


def get_device() -> str:
    """The resolved default device: ``"cpu"`` or ``"cuda"``."""
    return resolve_device(None)


def xp_for(device: str):
    """The array module that holds arrays of ``device``."""
    return _CuPy.load() if resolve_device(device) == "cuda" else numpy


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise.

    An array described by shape alone (``kernels.Probe``, for ``summary`` and
    ``describe``) names its device as the string ``"cpu"`` or ``"cuda"``.
    """
    if is_cupy_array(array):
        return "cuda"
    device = getattr(array, "device", None)
    return "cuda" if isinstance(device, str) and device == "cuda" else "cpu"


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (a no-op when it is already there)."""
    if resolve_device(device) == "cuda":
        return _CuPy.load().asarray(array)
    return asnumpy(array)


def asnumpy(array):
    """A NumPy array from a NumPy array, a CuPy array or a torch tensor."""
    if is_cupy_array(array):
        return array.get()
    if type(array).__module__.startswith("torch"):
        return array.detach().cpu().numpy()
    return numpy.asarray(array)

