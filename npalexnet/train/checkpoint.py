"""Checkpoints: one ``.npz`` holding everything a run needs to continue or predict.

Layout (every entry a plain array, so it loads with ``allow_pickle=False``):

* ``model/<name>``: the model's ``state_dict()`` (parameters and buffers);
* ``optimizer/<index>/<name>``: the optimizer's per-parameter arrays
  (momentum buffers, Adam moments);
* ``ema/<name>``: the moving average of the weights, when the run keeps one
  (:class:`~npalexnet.optim.ExponentialMovingAverage`; its decay and step
  count are in ``meta["ema"]``); prediction and evaluation use these weights;
* ``meta``: a 0-d string array holding JSON: format and version, the epoch
  and step reached, the variant and model keyword arguments, the class names,
  the normalisation, the optimizer's hyper-parameters and scalar state, the
  scheduler state, the library RNG state (itself a JSON string), the run's
  configuration and its per-epoch history.

Writing is atomic (temporary file, fsync, rename: see
:mod:`npalexnet.data.atomic`), so a crash leaves the previous checkpoint
intact. Reading loads every entry eagerly inside one ``try``: a truncated or
corrupted file (bad zip directory, CRC mismatch, missing entries, bad JSON)
raises :class:`CheckpointError` with a message naming the file.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from .. import backend
from ..data.atomic import atomic_link, atomic_savez

FORMAT = "npalexnet-checkpoint"
VERSION = 1
LAST, BEST = "last.npz", "best.npz"


def epoch_checkpoint(epoch: int) -> str:
    """The name of the checkpoint ``--save-every`` keeps after (1-based) ``epoch``: ``epoch_007.npz``."""
    return f"epoch_{epoch:03d}.npz"


#: The names :func:`epoch_checkpoint` gives (a glob pattern).
EPOCH_CHECKPOINTS = "epoch_[0-9][0-9][0-9]*.npz"


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable or not an npalexnet checkpoint."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``model`` and ``optimizer`` arrays (host) and ``meta`` (dict)."""

    path: Path
    model: dict
    optimizer: dict
    meta: dict
    ema: dict = field(default_factory=dict)   # the averaged weights (empty: the run kept none)

    def optimizer_state(self) -> dict:
        """The optimizer's ``state_dict()`` again (arrays plus scalar state)."""
        opt = self.meta.get("optimizer") or {}
        state: dict = {int(k): dict(v) for k, v in (opt.get("scalar_state") or {}).items()}
        for key, value in self.optimizer.items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = value
        return {"state": state, "param_groups": opt.get("param_groups", [])}

    def ema_state(self) -> dict | None:
        """The ``state_dict()`` of the run's :class:`~npalexnet.optim.ExponentialMovingAverage`, or None."""
        if not self.ema:
            return None
        return {**self.meta["ema"], "shadow": dict(self.ema)}


def save_checkpoint(path, model, optimizer=None, meta: dict | None = None, ema=None) -> Path:
    """Write ``model`` (and ``optimizer``, and the weights' moving average ``ema``)
    with ``meta`` to ``path`` atomically.

    ``meta`` must be JSON-serialisable; the optimizer's scalar state and
    hyper-parameters, and the average's decay and step count, are added to it here.
    """
    arrays = {f"model/{k}": backend.asnumpy(v) for k, v in model.state_dict().items()}
    meta = dict(meta or {})
    if ema is not None:
        state = ema.state_dict()
        arrays.update({f"ema/{k}": backend.asnumpy(v) for k, v in state.pop("shadow").items()})
        meta["ema"] = _plain(state)
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict = {}
        for index, entry in sd["state"].items():
            for name, value in entry.items():
                if getattr(value, "ndim", 0) > 0:
                    arrays[f"optimizer/{index}/{name}"] = backend.asnumpy(value)
                else:
                    scalars.setdefault(str(index), {})[name] = _plain(value)
        meta["optimizer"] = {"name": type(optimizer).__name__, "param_groups": _plain(sd["param_groups"]),
                             "scalar_state": scalars}
    meta.update(format=FORMAT, version=VERSION)
    arrays["meta"] = numpy.array(json.dumps(meta))
    return atomic_savez(path, arrays)


def copy_checkpoint(src, path) -> Path:
    """``path`` holds the checkpoint ``src`` (``best.npz`` the epoch's ``last.npz``), atomically and without
    serialising it again: a hard link where the file system has them (see :func:`~npalexnet.data.atomic.atomic_link`:
    the next ``last.npz`` is a new file and leaves ``path`` as it is), else a copy."""
    return atomic_link(src, path)


def load_checkpoint(path) -> Checkpoint:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated, corrupted, or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + ("" if path.parent.is_dir()
                                                            else f" (directory {path.parent} does not exist)"))
    try:
        with numpy.load(path, allow_pickle=False) as z:
            entries = {name: z[name] for name in z.files}   # eager: a CRC error surfaces here
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated file: "
                              f"{type(exc).__name__}: {exc})") from exc
    if "meta" not in entries:
        raise CheckpointError(f"{path} is not an npalexnet checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(entries.pop("meta")))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its 'meta' entry is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an npalexnet checkpoint (format {meta.get('format')!r})"
                              if isinstance(meta, dict) else f"{path} is not an npalexnet checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, this npalexnet reads "
                              f"version {VERSION}")
    model = {k[len("model/"):]: v for k, v in entries.items() if k.startswith("model/")}
    optimizer = {k[len("optimizer/"):]: v for k, v in entries.items() if k.startswith("optimizer/")}
    ema = {k[len("ema/"):]: v for k, v in entries.items() if k.startswith("ema/")}
    if not model:
        raise CheckpointError(f"{path} holds no model weights")
    if ema and not isinstance(meta.get("ema"), dict):
        raise CheckpointError(f"{path} holds averaged weights but not their decay and step count (meta 'ema')")
    for kind, weights in (("weight", model), ("averaged weight", ema)):
        for name, value in weights.items():
            if value.dtype.kind == "f" and not numpy.isfinite(value).all():
                raise CheckpointError(f"{path}: {kind} {name} holds NaN or infinite values")
    return Checkpoint(path, model, optimizer, meta, ema)


def load_model_state(model, checkpoint: Checkpoint, averaged: bool = False) -> None:
    """``model.load_state_dict`` with a CheckpointError naming the file on a mismatch.

    ``averaged``: the moving average of the weights where the run kept one
    (what evaluation and prediction use), else the trained weights themselves.
    """
    state = checkpoint.ema if averaged and checkpoint.ema else checkpoint.model
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{checkpoint.path} does not fit this model: {exc}") from exc


def _plain(value):
    """JSON-ready copy: NumPy scalars to Python numbers, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value
