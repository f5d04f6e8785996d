"""The seam's machinery: the implementation protocol, the registry, and the one choice.

See :mod:`npalexnet.kernels` for what is registered and why.
"""


from __future__ import annotations

from .. import config
from ..backend import is_cupy_array


class Implementation:
    """A faster implementation of one seam. Subclasses set ``seam`` and ``name`` and define:

    * ``applies(layer, x, settings) -> bool``: whether it computes this layer for input ``x``
      (an array, or a :class:`Probe` with the shape, dtype and device only) under ``settings``;
    * ``forward(layer, x) -> (y, state)`` and ``backward(layer, state, grad_out, input_grad) -> dx``,
      with the layer's reference semantics (parameter gradients accumulated into ``.grad``;
      ``input_grad=False`` may return None where the layer's own backprop may).
    """

    seam = ""
    name = ""
    devices = ("cpu",)   # where it can run: "cpu" (NumPy arrays), "cuda" (CuPy arrays)

    def applies(self, layer, x, settings) -> bool:
        raise NotImplementedError

    def describe(self, layer, x, settings) -> str:
        """What :func:`describe` prints for this layer (default: ``name``)."""
        return self.name

    def forward(self, layer, x):
        raise NotImplementedError

    def backward(self, layer, state, grad_out, input_grad):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.seam}: {self.name}>"


_REGISTRY: dict[str, list[Implementation]] = {}


def register(implementation: Implementation) -> Implementation:
    """Add an implementation to its seam, after those already there (earlier ones win)."""
    _REGISTRY.setdefault(implementation.seam, []).append(implementation)
    return implementation


def implementations(seam: str | None = None) -> list[Implementation]:
    """The implementations of ``seam`` in the order :func:`choose` tries them (all seams: None)."""
    if seam is None:
        return [impl for impls in _REGISTRY.values() for impl in impls]
    return list(_REGISTRY.get(seam, ()))


def choose(layer, x, settings=None) -> Implementation | None:
    """The implementation that runs ``layer`` on ``x``, or None: the layer's own code.

    A subclass that overrides the math (``forward``, ``backprop``, or an optimizer's ``update``) of
    the class that declared the seam always runs its own code: the fast paths compute the parent's.
    """
    settings = config.current() if settings is None else settings
    if not settings.fast_paths or not _math_is_the_seams(type(layer)):
        return None
    for implementation in _REGISTRY.get(layer.seam, ()):
        if implementation.applies(layer, x, settings):
            return implementation
    return None


_MATH = ("forward", "backprop", "update")
_DECLARED: dict = {}


def _math_is_the_seams(cls) -> bool:
    """Whether ``cls`` computes what the class that declared its seam computes."""
    if cls not in _DECLARED:
        owner = next(c for c in cls.__mro__ if "seam" in c.__dict__)
        _DECLARED[cls] = all(getattr(cls, name, None) is getattr(owner, name, None) for name in _MATH)
    return _DECLARED[cls]


class Probe:
    """An input described by shape, dtype and device alone (for :func:`describe`): the layout is
    taken to be the (C, N, ...) memory the fast paths pass on."""

    def __init__(self, shape, dtype, device: str = "cpu"):
        import numpy
        self.shape, self.dtype, self.device = tuple(int(d) for d in shape), numpy.dtype(dtype), device
        self.ndim = len(self.shape)
        self.size = int(numpy.prod(self.shape, dtype=numpy.int64))


def on_gpu(x) -> bool:
    """A CuPy array, or a probe on ``cuda``."""
    return x.device == "cuda" if isinstance(x, Probe) else is_cupy_array(x)


def on_cpu_float(x) -> bool:
    """A NumPy float32/float64 array (or such a probe)."""
    if isinstance(x, Probe):
        return x.device == "cpu" and x.dtype.char in "fd"
    return not is_cupy_array(x) and getattr(x, "dtype", None) is not None and x.dtype.char in "fd"


def describe(layer, input_shape, dtype="float32", device: str = "cpu", settings=None) -> str:
    """What computes ``layer`` for an input of ``input_shape``: an implementation's description,
    or "reference" (the layer's own code; also for layers without a seam)."""
    if layer.seam is None:
        return "reference"
    probe = Probe(input_shape, dtype, device)
    settings = config.current() if settings is None else settings
    implementation = choose(layer, probe, settings)
    return "reference" if implementation is None else implementation.describe(layer, probe, settings)


