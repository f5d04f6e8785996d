"""Freeze the leading part of a network: fine-tuning the classifier on top of fixed features.

``freeze(model, "features")`` fixes the convolutional part of any AlexNet
variant (``features``; ``layer1``..``layer5`` in the ``bn`` variant), as
``requires_grad_(False)`` on those parameters does in torch:

* :func:`trainable_parameters` leaves them out, so the optimizer built from
  it never updates them (no step, no weight decay, no momentum);
* their forward pass keeps nothing for backward and the backward pass stops
  before them: no weight gradient and no input gradient is computed there
  (a training step costs the classifier's backward only).

Only leading stages can be frozen (the backward pass would otherwise have to
run through a frozen stage to reach trainable ones before it). BatchNorm
layers in frozen stages still use batch statistics in training mode and
update their running statistics, as in torch; those are buffers, not
trained parameters.
"""

from __future__ import annotations

from .. import nn


class FreezeError(ValueError):
    """A ``freeze`` request that does not name leading stages of the model (one-line message)."""


def _stage_names(model: nn.Module) -> list[str]:
    if not isinstance(model, nn.Sequential) or not hasattr(model, "frozen_stages"):
        raise FreezeError(f"freeze works on the AlexNet models (a chain of stages), not on {type(model).__name__}")
    return [name for name, _ in model.named_children()]


def freeze(model: nn.Module, parts) -> str:
    """Freeze the stages named in ``parts`` (``"features"``, or stage names, comma-separated or a list).

    Returns:
        A one-line summary for the log (what is frozen, how many parameters train).
    Raises:
        FreezeError: an unknown name, stages that are not the leading ones, or nothing left to train.
    """
    names = _stage_names(model)
    wanted: list[str] = []
    for part in (parts.split(",") if isinstance(parts, str) else parts):
        part = part.strip()
        expanded = list(model.feature_stages) if part == "features" else [part]
        if not all(name in names for name in expanded):
            raise FreezeError(f"--freeze {part}: no such part of the {getattr(model, 'variant', '')} model; its "
                              f"stages are {', '.join(names)} ('features' = {', '.join(model.feature_stages)})")
        wanted += [name for name in expanded if name not in wanted]
    if not wanted:
        return "freeze: nothing frozen"
    count = max(names.index(name) for name in wanted) + 1
    with_params = {name for name in names[:count] if any(True for _ in getattr(model, name).parameters())}
    if not with_params <= set(wanted):
        raise FreezeError(f"--freeze {','.join(wanted)}: only leading stages can be frozen; "
                          f"{', '.join(sorted(with_params - set(wanted)))} would still train before them")
    if count == len(names):
        raise FreezeError(f"--freeze {','.join(wanted)}: that is the whole model, nothing would train")
    model.frozen_stages = count
    frozen = sum(p.size for p in model.parameters()) - sum(p.size for p in trainable_parameters(model))
    training = [name for name in names[count:] if any(True for _ in getattr(model, name).parameters())]
    return (f"frozen: {', '.join(names[:count])} ({frozen:,} parameters); training "
            f"{', '.join(training)} ({sum(p.size for p in trainable_parameters(model)):,} parameters)")


def trainable_parameters(model: nn.Module) -> list:
    """The parameters outside the frozen stages (all of them when nothing is frozen), in model order."""
    frozen = getattr(model, "frozen_stages", 0)
    if not frozen:
        return list(model.parameters())
    fixed = {id(p) for stage in list(model.children())[:frozen] for p in stage.parameters()}
    return [p for p in model.parameters() if id(p) not in fixed]
