"""The same network in PyTorch: one ``torch.nn`` module per npalexnet module.

``to_torch(module)`` walks the npalexnet module tree and builds the
``torch.nn`` layer of the same kind, arguments and attribute name for each
node, then loads the npalexnet weights into it, so the twin computes the same
function from the same numbers and its ``named_parameters()`` carry the same
dotted names. The study tools use it to compare every gradient with autograd
(``examples/inspect_backprop.py``, ``examples/compare_with_pytorch.py``,
``python -m npalexnet.gradcheck``).

Dropout: by default the twin's dropout layers replay the mask that the
npalexnet layer drew in its last forward (run npalexnet first, then the
twin), so a training step with dropout on can be compared exactly. Pass
``replay_dropout=False`` for torch's own random dropout.

torch is imported lazily: the rest of npalexnet never needs it.
"""

from __future__ import annotations

import numpy

from .. import backend, nn


def _torch():
    try:
        import torch
    except ImportError as exc:   # pragma: no cover - exercised only without torch
        raise ImportError("comparing with PyTorch needs torch: pip install -e \".[test]\"") from exc
    return torch


def torch_dtype(dtype):
    """The torch dtype of a NumPy floating dtype."""
    torch = _torch()
    return {numpy.dtype("float64"): torch.float64, numpy.dtype("float32"): torch.float32,
            numpy.dtype("float16"): torch.float16}[numpy.dtype(dtype)]


def to_tensor(array, requires_grad: bool = False):
    """A CPU torch tensor holding a copy of ``array`` (NumPy or CuPy)."""
    torch = _torch()
    t = torch.from_numpy(numpy.array(backend.asnumpy(array)))
    return t.requires_grad_(requires_grad) if requires_grad else t


def to_torch(module, *, replay_dropout: bool = True, dtype=None):
    """Build the torch twin of ``module`` and load its weights.

    Inputs:
        module: an npalexnet Module built from the layers of :mod:`npalexnet.nn`
            (any tree of Sequential, AlexNet-style containers with ``_stages``).
        replay_dropout: twin dropout layers reuse the npalexnet masks.
        dtype: torch dtype of the twin (default: the module's dtype).
    Returns:
        A ``torch.nn.Module`` on the CPU, in the module's train/eval mode.
    """
    _torch()   # fail early, with the install hint
    twin = _build(module, replay_dropout)
    twin = twin.to(dtype or torch_dtype(module.dtype))
    state = {k: to_tensor(v) for k, v in module.state_dict().items()}
    twin.load_state_dict(state)
    twin.train(module.training)
    return twin


def _build(m, replay_dropout):
    T = _torch().nn
    if isinstance(m, nn.Conv2d):
        return T.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                        groups=m.groups, bias=m.bias is not None)
    if isinstance(m, nn.Linear):
        return T.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.ReLU):
        return T.ReLU()
    if isinstance(m, nn.MaxPool2d):
        return T.MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return T.AdaptiveAvgPool2d(m.output_size)
    if isinstance(m, nn.LocalResponseNorm):
        return T.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
    if isinstance(m, nn.BatchNorm2d):
        return T.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum)
    if isinstance(m, nn.Flatten):
        return T.Flatten(m.start_dim, m.end_dim)
    if isinstance(m, nn.Dropout):
        return ReplayDropout(m) if replay_dropout else T.Dropout(m.p)
    if isinstance(m, nn.CrossEntropyLoss):
        return T.CrossEntropyLoss(label_smoothing=m.label_smoothing, reduction=m.reduction)
    if isinstance(m, nn.Sequential):
        return T.Sequential(*[_build(c, replay_dropout) for c in m])
    if hasattr(m, "_stages"):
        return _Stages(m, replay_dropout)
    raise TypeError(f"to_torch: no torch twin for {type(m).__name__}")


def _stages_class():
    torch = _torch()

    class Stages(torch.nn.Module):
        """Children under the npalexnet names, applied in the npalexnet stage order."""

        def __init__(self, m, replay_dropout):
            super().__init__()
            names = {id(child): name for name, child in m.named_children()}
            self._order = []
            for stage in m._stages():
                name = names[id(stage)]
                self.add_module(name, _build(stage, replay_dropout))
                self._order.append(name)

        def forward(self, x):
            for name in self._order:
                x = getattr(self, name)(x)
            return x

    return Stages


def _replay_class():
    torch = _torch()

    class Replay(torch.nn.Module):
        """Dropout whose mask is the one its npalexnet layer drew last."""

        def __init__(self, layer):
            super().__init__()
            self.layer = [layer]   # a list: not a registered submodule

        def forward(self, x):
            layer = self.layer[0]
            if not self.training or layer.p == 0.0:
                return x
            cache = layer._cache
            if cache is None or isinstance(cache[0], str):
                raise RuntimeError("ReplayDropout: run the npalexnet model forward (in training mode) "
                                   "before the torch twin, so the mask exists")
            mask = torch.from_numpy(backend.asnumpy(cache[0]))
            return x * mask.to(x.dtype) / (1.0 - layer.p)

    return Replay


_CLASSES = {}


def _Stages(m, replay_dropout):
    cls = _CLASSES.get("stages") or _CLASSES.setdefault("stages", _stages_class())
    return cls(m, replay_dropout)


def ReplayDropout(layer):
    cls = _CLASSES.get("replay") or _CLASSES.setdefault("replay", _replay_class())
    return cls(layer)
