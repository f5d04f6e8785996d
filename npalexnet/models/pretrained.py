"""Bring weights in: a torch, safetensors or npalexnet file into a model, for fine-tuning.

``load_pretrained(model, source)`` reads

* a torch ``state_dict`` saved with ``torch.save`` (``.pth``, ``.pt``; read
  with torch, ``weights_only=True``), also one wrapped as ``{"state_dict": ...}``
  or ``{"model": ...}`` and one saved from ``DataParallel`` (``module.`` prefixes),
  e.g. torchvision's ImageNet AlexNet weights into the ``torchvision`` variant;
* a ``.safetensors`` file (``npalexnet.export`` writes them, Hugging Face hosts them);
* an npalexnet training checkpoint (``.npz``: its ``model/`` entries) or a
  plain ``numpy.savez`` of a ``state_dict``;
* or an in-memory mapping of names to arrays (NumPy, CuPy or torch tensors),

and loads it into ``model``: names and shapes must match (npalexnet's names
are torch's), except the classifier's last layer, which is re-initialised
(torch's default initialisation, from the library generator) when the file was
trained for another number of classes. The return value says what happened.
Every mismatch is one :class:`PretrainedError` naming the file, the key and
both shapes; nothing is loaded then.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from .. import nn

TORCH_SUFFIXES = (".pth", ".pt")
SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz")


class PretrainedError(ValueError):
    """Weights that cannot be read, or do not fit the model (the message says which, in one line)."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did; ``str()`` is a one-line summary for the log."""

    source: str
    loaded: list = field(default_factory=list)          # state_dict keys taken from the source
    reinitialised: str | None = None                    # the classifier layer re-initialised, if any
    classes: tuple | None = None                        # (in the source, in the model) when they differ

    def __str__(self) -> str:
        text = f"init-from {self.source}: loaded {len(self.loaded)} tensors"
        if self.reinitialised:
            text += (f"; {self.reinitialised} re-initialised for {self.classes[1]} classes "
                     f"(the file has {self.classes[0]})")
        return text


def read_state_dict(path) -> dict:
    """The name -> NumPy array table of a weights file (see the module docstring for the formats)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PretrainedError(f"{path}: unknown weights format {suffix or '(no suffix)'!r}: expected "
                              f"{', '.join(SUFFIXES)}")
    if not path.is_file():
        raise PretrainedError(f"no weights file at {path}")
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    if suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_npz(path)


def _read_torch(path: Path) -> dict:
    try:
        import torch
    except ImportError as exc:
        raise PretrainedError(f"{path} is a torch file: reading it needs torch (pip install torch), or convert it "
                              "to .safetensors") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises many types (pickle, zip, RuntimeError) for a bad file
        raise PretrainedError(f"{path} is not a readable torch state_dict ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    for wrapper in ("state_dict", "model"):   # training scripts' {"model": ..., "optimizer": ...}
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path} holds a {type(obj).__name__}, not a state_dict of tensors")
    # NumPy has no bfloat16: half-precision weights come in as float32.
    return {str(k): (v.detach().float() if v.dtype in (torch.float16, torch.bfloat16) else v.detach()).numpy()
            for k, v in obj.items()}


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors.numpy import load_file
    except ImportError as exc:
        raise PretrainedError(f"{path}: reading safetensors needs the safetensors package "
                              "(pip install \"npalexnet[export]\")") from exc
    try:
        return dict(load_file(str(path)))
    except Exception as exc:   # safetensors raises its own error types for a bad header or size
        raise PretrainedError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from exc


def _read_npz(path: Path) -> dict:
    try:
        with numpy.load(path, allow_pickle=False) as z:
            entries = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as exc:
        raise PretrainedError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    # An npalexnet training checkpoint (npalexnet.train.checkpoint) keeps the weights under "model/".
    model = {k[len("model/"):]: v for k, v in entries.items() if k.startswith("model/")}
    return model if model else entries


def classifier_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and layer of the model's last Linear layer (the one whose outputs are the classes)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PretrainedError(f"{type(model).__name__} has no Linear layer to act as the classifier")
    return linears[-1]


def load_pretrained(model: nn.Module, source, *, replace_classifier: bool = True) -> LoadReport:
    """Load the weights of ``source`` (a path or a mapping) into ``model`` in place.

    Inputs:
        model: the npalexnet model to fine-tune, built for the new task's classes.
        source: a ``.pth``/``.pt``/``.safetensors``/``.npz`` path, or a state_dict mapping.
        replace_classifier: re-initialise the last Linear layer when the
            source was trained for another number of classes (else that is an error).
    Returns:
        A :class:`LoadReport` (``str()`` of it is the line to log).
    Raises:
        PretrainedError: an unreadable file, missing or unexpected keys, or a
            shape that differs anywhere but in the classifier's class count.
    """
    label = str(source) if not isinstance(source, Mapping) else "the given state_dict"
    given = dict(source) if isinstance(source, Mapping) else read_state_dict(source)
    if given and all(k.startswith("module.") for k in given):   # saved from (Distributed)DataParallel
        given = {k[len("module."):]: v for k, v in given.items()}
    own = model.state_dict()
    missing, unexpected = [k for k in own if k not in given], [k for k in given if k not in own]
    if missing or unexpected:
        parts = [f"{what} {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''} ({len(keys)})"
                 for what, keys in (("missing keys", missing), ("unexpected keys", unexpected)) if keys]
        raise PretrainedError(f"{label} does not fit this {getattr(model, 'variant', type(model).__name__)} "
                              f"model: {'; '.join(parts)}")
    head_name, head = classifier_head(model)
    head_keys = [f"{head_name}.weight"] + ([f"{head_name}.bias"] if head.bias is not None else [])
    file_shape = tuple(given[head_keys[0]].shape)
    file_classes = file_shape[0] if len(file_shape) == 2 else None
    replace = (replace_classifier and file_classes not in (None, head.out_features)
               and file_shape[1] == head.in_features
               and all(tuple(given[k].shape) == (file_classes,) for k in head_keys[1:]))
    wrong = [key for key, target in own.items()
             if not (replace and key in head_keys) and tuple(given[key].shape) != tuple(target.shape)]
    if wrong:
        key = wrong[0]
        hint = " (the number of classes; allowed only with replace_classifier)" if key in head_keys else ""
        more = f" ({len(wrong) - 1} more tensors differ in shape)" if len(wrong) > 1 else ""
        raise PretrainedError(f"{label}: {key} has shape {tuple(given[key].shape)} in the file but "
                              f"{tuple(own[key].shape)} in the model{hint}{more}")
    loaded = [k for k in own if not (replace and k in head_keys)]
    model.load_state_dict({k: given[k] for k in loaded}, strict=False)   # copies, cast to the model's dtype
    report = LoadReport(label, loaded)
    if replace:
        fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
        head.load_state_dict(fresh.state_dict())   # copied to the head's device and dtype
        report.reinitialised, report.classes = head_name, (file_classes, head.out_features)
    return report

