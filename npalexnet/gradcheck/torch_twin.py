"""The same network in PyTorch: one ``torch.nn`` module per npalexnet module.

``to_torch(module)`` walks the npalexnet module tree and builds, for each
node, the ``torch.nn`` module its ``torch_equivalent()`` names (the
per-layer protocol of :class:`npalexnet.nn.Module`: a new layer says what it
is in torch in its own file), under the same attribute name, then loads the
npalexnet weights into it. The twin computes the same function from the same
numbers, and its ``named_parameters()`` carry the same dotted names. The
study tools use it to compare every gradient with autograd
(:mod:`npalexnet.gradcheck.torch_compare`, ``python -m npalexnet.gradcheck``,
``examples/inspect_backprop.py``, ``examples/compare_with_pytorch.py``), and
the exporter to check its files. It lives in :mod:`npalexnet.gradcheck`
because the comparison and the report (that floor) build twins, and a floor
never imports a higher one (``inspect``).

Dropout: by default the twin's dropout layers replay the mask that the
npalexnet layer drew in its last forward (run npalexnet forward first, then
the twin, before npalexnet's backward), so a training step with dropout on
can be compared exactly. Pass ``replay_dropout=False`` for torch's own dropout.

This module imports torch; nothing else in npalexnet needs it. The twin's
classes are defined at module level, so a twin can be pickled and saved with
``torch.save``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy

try:
    import torch
except ImportError as exc:   # pragma: no cover - exercised only without torch
    raise ImportError("comparing with PyTorch needs torch: pip install -e \".[test]\"") from exc

from .. import backend, nn


def torch_dtype(dtype):
    """The torch dtype of a NumPy floating dtype."""
    return {numpy.dtype("float64"): torch.float64, numpy.dtype("float32"): torch.float32,
            numpy.dtype("float16"): torch.float16}[numpy.dtype(dtype)]


def to_tensor(array, requires_grad: bool = False):
    """A CPU torch tensor holding a copy of ``array`` (NumPy or CuPy)."""
    t = torch.from_numpy(numpy.array(backend.asnumpy(array)))
    return t.requires_grad_(requires_grad) if requires_grad else t


class ReplayDropout(torch.nn.Module):
    """Dropout whose mask is the one its npalexnet layer drew in its last forward."""

    def __init__(self, layer: nn.Dropout):
        super().__init__()
        self.p = layer.p
        self.source = [layer]   # a list: the npalexnet layer is not a torch submodule

    def forward(self, x):
        layer = self.source[0]
        if not self.training or self.p == 0.0:
            return x
        if layer.mask is None:
            raise RuntimeError("ReplayDropout: run the npalexnet model forward (in training mode) before "
                               "the torch twin, and the twin before npalexnet's backward, so the mask exists")
        mask = torch.from_numpy(backend.asnumpy(layer.mask))
        return x * mask.to(x.dtype) / (1.0 - self.p)

    def __getstate__(self):   # pickling keeps the module, not the npalexnet layer it replays
        state = dict(self.__dict__)
        state["source"] = [None]
        return state


def copy_weights(module, torch_module) -> None:
    """Load ``module``'s ``state_dict`` (parameters and buffers, torch's names) into ``torch_module``."""
    torch_module.load_state_dict({k: to_tensor(v) for k, v in module.state_dict().items()})


def to_torch(module, *, replay_dropout: bool = True, dtype=None):
    """Build the torch twin of ``module`` and load its weights.

    Inputs:
        module: an npalexnet Module whose every node has a ``torch_equivalent()``
            (all layers of :mod:`npalexnet.nn`, Sequential and the AlexNet models).
        replay_dropout: twin dropout layers reuse the npalexnet masks.
        dtype: torch dtype of the twin (default: the module's dtype).
    Returns:
        A ``torch.nn.Module`` on the CPU, in the module's train/eval mode.
    """
    twin = _build(module, replay_dropout)
    twin = twin.to(dtype or torch_dtype(module.dtype))
    copy_weights(module, twin)
    twin.train(module.training)
    return twin


def _build(m, replay_dropout):
    if isinstance(m, nn.Dropout) and replay_dropout:
        return ReplayDropout(m)
    equivalent = m.torch_equivalent()
    if equivalent is None:
        raise TypeError(f"to_torch: no torch twin for {type(m).__name__} (its torch_equivalent() is None)")
    name, args, kwargs = equivalent
    if name == "Sequential":
        return torch.nn.Sequential(OrderedDict((child_name, _build(child, replay_dropout))
                                               for child_name, child in m.named_children()))
    return getattr(torch.nn, name)(*args, **kwargs)
