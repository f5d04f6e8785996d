"""Small helpers shared by the layers: argument normalisation and input checks."""

from __future__ import annotations

from .. import backend


def pair(value, name: str = "value") -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``, as torch's ``_pair``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def check_array(module, x, ndim: int, layout: str, channels: int | None = None,
                channel_axis: int = 1) -> None:
    """Raise a TypeError/ValueError naming ``module`` if ``x`` is not a fitting array.

    ``layout`` describes the expected shape in words, e.g. ``"(N, C, H, W)"``.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{module!r}: expected a NumPy or CuPy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{module!r}: expected a {ndim}-D input {layout}, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[channel_axis] != channels:
        raise ValueError(f"{module!r}: expected {channels} channels at axis {channel_axis} of "
                         f"{layout}, got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{module!r}: expected a floating-point input, got dtype {x.dtype}")


def check_window_fits(module, x, kernel, padding) -> None:
    """The (padded) spatial size of ``x`` (N, C, H, W) must hold one window of ``kernel``."""
    (kh, kw), (ph, pw) = kernel, padding
    if x.shape[2] + 2 * ph < kh or x.shape[3] + 2 * pw < kw:
        raise ValueError(f"{module!r}: input of spatial size {tuple(x.shape[2:])} (padding {tuple(padding)}) "
                         f"is smaller than the kernel {tuple(kernel)}")


def check_matches_params(module, x, param) -> None:
    """The input must have the parameters' dtype and live on their device."""
    if backend.device_of(x) != backend.device_of(param.data):
        raise TypeError(f"{module!r}: input is on {backend.device_of(x)} but the parameters are on "
                        f"{backend.device_of(param.data)}; move one with .to(device)")
    if x.dtype != param.data.dtype:
        raise TypeError(f"{module!r}: input dtype {x.dtype} does not match the parameters' dtype "
                        f"{param.data.dtype}; cast the input or call module.astype({x.dtype})")
