"""What a resumed run trains with: the checkpoint's recipe, never silently another one.

A resume continues the saved recipe and takes the runtime options
(:data:`~npalexnet.train.config.RUNTIME_FIELDS`: ``--epochs``, the data's
location, the device...) that the command line gives; those it does not
give keep their saved values (``--resume last`` alone finishes the run as
it was started), except those of
:data:`~npalexnet.train.config.INVOCATION_FIELDS`. A recipe option that the
command line sets to a value other than the saved one stops the resume with
one line naming each (saved vs given), unless ``--override`` asks for the new
values; options that define the model or its data split (:data:`FIXED`)
cannot change within a run at all.
"""

from __future__ import annotations

import dataclasses

from .checkpoint import CheckpointError
from .config import INVOCATION_FIELDS, RUNTIME_FIELDS, TrainConfig, merge_for_resume

#: Options that define the model's shape or which images train and validate: a new run, not a resume.
FIXED = ("recipe", "dataset", "image_size", "resize_rule", "augment", "val_fraction", "subset", "seed", "variant",
         "width", "lrn", "dropout", "init", "paper_bias", "init_from", "freeze")


#: Fields whose option switches them off.
NEGATED = ("download", "flip", "tta", "nesterov", "progress", "test")


def option_name(field: str) -> str:
    """``batch_size`` -> ``--batch-size``; ``tta`` -> ``--no-tta``."""
    return ("--no-" if field in NEGATED else "--") + field.replace("_", "-")


def options_set(cfg: TrainConfig) -> set[str]:
    """The fields of ``cfg`` that differ from the defaults: what a caller of ``fit`` set (the command line
    knows exactly what was typed and passes that instead)."""
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(cfg, f.name) != f.default}


def merge_resumed(saved: dict, current: TrainConfig, given=None, partial_steps: int = 0):
    """The configuration a resume trains with, and the list of overridden ``(field, saved, given)``.

    Args:
        saved: the checkpoint's configuration (``meta["config"]``).
        current: this invocation's configuration.
        given: the fields this invocation set (None, a caller of ``fit``: those that differ from the
            defaults, and every runtime field).
        partial_steps: the steps of an unfinished epoch in the checkpoint (the batch size cannot change then).
    Raises:
        CheckpointError: a recipe option differs and ``current.override`` is False, or a FIXED one differs.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    from_caller = given is None
    given = options_set(current) if from_caller else set(given)
    differ = [(name, saved.get(name, defaults[name]), getattr(current, name)) for name in defaults
              if name in given and name not in RUNTIME_FIELDS
              and saved.get(name, defaults[name]) != getattr(current, name)]
    fixed = [d for d in differ if d[0] in FIXED]
    if fixed:
        raise CheckpointError(f"--resume: {_listing(fixed)} define{'s' if len(fixed) == 1 else ''} the model or "
                              "its data and cannot change within a run; start a new run for "
                              f"{'it' if len(fixed) == 1 else 'them'} (or leave {'it' if len(fixed) == 1 else 'them'} "
                              "out to continue)")
    if differ and not current.override:
        raise CheckpointError(f"--resume: the command line changes the run's recipe: {_listing(differ)}; pass "
                              "--override to continue with the new values, or leave them out to continue the "
                              "saved recipe")
    if partial_steps and any(d[0] == "batch_size" for d in differ):
        raise CheckpointError(f"--resume: the checkpoint stopped inside an epoch (step {partial_steps}); the batch "
                              "size can change only at the end of an epoch: resume with the saved one first")
    merged = merge_for_resume(saved, current)
    if not from_caller:   # runtime options the command line does not give: the saved run's
        kept = {name: saved[name] for name in RUNTIME_FIELDS
                if name in saved and name not in given and name not in INVOCATION_FIELDS}
        merged = dataclasses.replace(merged, **kept)
    return dataclasses.replace(merged, **{name: value for name, _, value in differ}), differ


def _listing(differ) -> str:
    return ", ".join(f"{option_name(name)} (saved {saved!r}, given {given!r})" for name, saved, given in differ)
