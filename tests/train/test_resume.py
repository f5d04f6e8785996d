"""A resume continues the saved recipe; a command line that changes it stops, naming each option."""

from __future__ import annotations

import pytest

from npalexnet.train import CheckpointError, TrainConfig
from npalexnet.train.resume import merge_resumed, option_name, options_set

SAVED = TrainConfig(lr=0.05, batch_size=128, subset=5000, epochs=2, out="runs/a").to_dict()


def test_runtime_options_come_from_the_command_line_and_the_rest_from_the_checkpoint():
    cfg, changed = merge_resumed(SAVED, TrainConfig(epochs=30, device="cpu", resume="last"), {"epochs", "device",
                                                                                              "resume"})
    assert (cfg.epochs, cfg.device, cfg.subset, cfg.lr) == (30, "cpu", 5000, 0.05) and changed == []


def test_a_changed_recipe_option_stops_the_resume_naming_each():
    current = TrainConfig(lr=0.1, schedule="cosine", tta=False, resume="last")
    with pytest.raises(CheckpointError) as caught:
        merge_resumed(SAVED, current, {"lr", "schedule", "tta", "resume"})
    assert str(caught.value) == ("--resume: the command line changes the run's recipe: --no-tta (saved True, given "
                                 "False), --lr (saved 0.05, given 0.1), --schedule (saved 'onecycle', given "
                                 "'cosine'); pass --override to continue with the new values, or leave them out "
                                 "to continue the saved recipe")


def test_an_option_given_with_the_saved_value_is_no_change():
    cfg, changed = merge_resumed(SAVED, TrainConfig(lr=0.05, subset=5000), {"lr", "subset"})
    assert changed == [] and cfg.subset == 5000


def test_override_takes_the_new_values_and_lists_them():
    cfg, changed = merge_resumed(SAVED, TrainConfig(lr=0.1, batch_size=64, override=True),
                                 {"lr", "batch_size", "override"})
    assert (cfg.lr, cfg.batch_size, cfg.subset) == (0.1, 64, 5000)
    assert changed == [("batch_size", 128, 64), ("lr", 0.05, 0.1)]


def test_the_model_and_the_split_cannot_change_even_with_override():
    for name, value in (("variant", "paper"), ("subset", 100), ("seed", 1), ("width", 0.5),
                        ("dataset", "fashionmnist")):
        with pytest.raises(CheckpointError, match=rf"{option_name(name)} \(saved .*, given .*\) defines the model "
                                                  r"or its data and cannot change within a run"):
            merge_resumed(SAVED, TrainConfig(**{name: value}, override=True), {name, "override"})


def test_the_batch_size_changes_only_at_the_end_of_an_epoch():
    with pytest.raises(CheckpointError, match=r"stopped inside an epoch \(step 7\)"):
        merge_resumed(SAVED, TrainConfig(batch_size=64, override=True), {"batch_size", "override"}, partial_steps=7)


def test_without_a_command_line_what_differs_from_the_defaults_counts_as_given():
    assert options_set(TrainConfig(lr=0.1, out="x")) == {"lr", "out"}
    with pytest.raises(CheckpointError, match=r"--lr \(saved 0.05, given 0.1\)"):
        merge_resumed(SAVED, TrainConfig(lr=0.1))
    older = {k: v for k, v in SAVED.items() if k != "label_smoothing"}   # a field the checkpoint predates
    cfg, _ = merge_resumed(older, TrainConfig())
    assert cfg.label_smoothing == TrainConfig().label_smoothing


def test_runtime_options_not_given_keep_the_saved_values():
    saved = TrainConfig(epochs=2, data_dir="../shared/data/cifar10", device="cpu", progress=False, tta_crops=0,
                        out="runs/a").to_dict()
    cfg, _ = merge_resumed(saved, TrainConfig(resume="last"), {"resume"})   # --resume last, nothing else
    assert (cfg.epochs, cfg.data_dir, cfg.device, cfg.tta_crops) == (2, "../shared/data/cifar10", "cpu", 0)
    assert (cfg.resume, cfg.progress, cfg.out) == ("last", True, None)   # this invocation's own
    cfg, _ = merge_resumed(saved, TrainConfig(resume="last", epochs=30, data_dir="/data"), {"resume", "epochs",
                                                                                           "data_dir"})
    assert (cfg.epochs, cfg.data_dir) == (30, "/data")
