"""The library's settings: which implementation runs, where, and whether a backward pass will follow.

One scoped configuration for everything that chooses *how* the math runs
(never *what* it computes), as ``torch.backends.cudnn.flags`` or Chainer's
``using_config``:

=================  ===========  ======================================================  ========================
setting            default      meaning                                                 environment variable
=================  ===========  ======================================================  ========================
``fast_paths``     True         False: every layer runs its reference code in nn/       ``NPALEXNET_FAST_PATHS``
``numba``          True         the numba CPU kernels (when numba imports)              ``NPALEXNET_NUMBA``
``conv``           ``"auto"``   convolution algorithm: auto, im2col or winograd         ``NPALEXNET_CONV``
``cuda_kernels``   True         the hand-written CUDA kernels (CuPy arrays only)        ``NPALEXNET_CUDA_KERNELS``
``buffer_pool``    False        recycle large arrays between steps (training on)        ``NPALEXNET_BUFFER_POOL``
``device``         ``"auto"``   the default device: auto, cpu or cuda                   ``NPALEXNET_DEVICE``
``grad_enabled``   True         False inside :func:`npalexnet.no_grad`                   (none)
=================  ===========  ======================================================  ========================

The environment variables are read once, when the package is imported, by
one parser that rejects a value it does not know (a typo fails at import
with a message naming the variable, instead of silently meaning "off").
After that they are only defaults:

* ``config.using(numba=False)``: a ``with`` block (nests, thread- and
  task-local through :mod:`contextvars`, restored on exit);
* ``config.reference()``: every fast path off, so a learner steps through the
  code of ``npalexnet/nn/`` and gets the same results (to float32 rounding);
* ``config.set_defaults(...)``: change the defaults for the whole process.

``config.current()`` returns the settings in force, a frozen
:class:`Settings`. Which implementation each setting selects is decided in
one place, :mod:`npalexnet.kernels` (``kernels.describe(model, shape)`` says
what runs for every layer).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from dataclasses import dataclass

CONV_ALGORITHMS = ("auto", "im2col", "winograd")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Settings:
    """The settings in force (see the module docstring)."""

    fast_paths: bool = True
    numba: bool = True
    conv: str = "auto"
    cuda_kernels: bool = True
    buffer_pool: bool = False
    device: str = "auto"
    grad_enabled: bool = True

    def __post_init__(self):
        for name in ("fast_paths", "numba", "cuda_kernels", "buffer_pool", "grad_enabled"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"config: {name} must be True or False, got {getattr(self, name)!r}")
        if self.conv not in CONV_ALGORITHMS:
            raise ValueError(f"config: conv must be one of {', '.join(CONV_ALGORITHMS)}, got {self.conv!r}")
        device = str(self.device).lower()
        if device not in DEVICES and not device.startswith("cuda:"):
            raise ValueError(f"config: device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


#: Each environment variable and the setting it gives the default of.
ENVIRONMENT = {
    "NPALEXNET_FAST_PATHS": "fast_paths",
    "NPALEXNET_NUMBA": "numba",
    "NPALEXNET_CONV": "conv",
    "NPALEXNET_CUDA_KERNELS": "cuda_kernels",
    "NPALEXNET_BUFFER_POOL": "buffer_pool",
    "NPALEXNET_DEVICE": "device",
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_environment(environ) -> dict:
    """The settings the environment variables give, as a dict; a ValueError for an unknown value."""
    changes = {}
    for variable, name in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is None or not raw.strip():
            continue
        text = raw.strip().lower()
        if isinstance(getattr(Settings, name), bool):
            if text not in _TRUE + _FALSE:
                raise ValueError(f"{variable}={raw!r}: expected one of {', '.join(_TRUE + _FALSE)}")
            changes[name] = text in _TRUE
        else:
            allowed = CONV_ALGORITHMS if name == "conv" else DEVICES
            if text not in allowed and not (name == "device" and text.startswith("cuda:")):
                raise ValueError(f"{variable}={raw!r}: expected one of {', '.join(allowed)}")
            changes[name] = text
    return changes


_environment = Settings(**parse_environment(os.environ))
_defaults = _environment
_scoped: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("npalexnet_settings", default=None)


def current() -> Settings:
    """The settings in force here (the innermost :func:`using` block, else the defaults)."""
    settings = _scoped.get()
    return _defaults if settings is None else settings


@contextlib.contextmanager
def using(**changes):
    """Change settings for the duration of a ``with`` block: ``with config.using(numba=False): ...``.

    Unknown names and bad values raise before the block runs.
    """
    settings = dataclasses.replace(current(), **changes)
    token = _scoped.set(settings)
    try:
        yield settings
    finally:
        _scoped.reset(token)


def reference():
    """Every fast path off: the layers run the code in ``npalexnet/nn/`` (a ``with`` block)."""
    return using(fast_paths=False)


def set_defaults(**changes) -> Settings:
    """Change the process-wide defaults (what holds outside every :func:`using` block)."""
    global _defaults
    _defaults = dataclasses.replace(_defaults, **changes)
    return _defaults


def defaults() -> Settings:
    """The process-wide defaults."""
    return _defaults


def environment_defaults() -> Settings:
    """The settings the environment gave at import (before any :func:`set_defaults`)."""
    return _environment
