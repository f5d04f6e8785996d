"""train.pipeline: the run's transforms are built from its configuration."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.data import Preprocess
from npalexnet.data.paper_augment import PaperAugment
from npalexnet.train import TrainConfig
from npalexnet.train.pipeline import build_preprocess

NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "eigvals": [1.0, 0.5, 0.1],
        "eigvecs": numpy.eye(3).tolist()}


@pytest.mark.parametrize("augment, kind", [("pad-crop", Preprocess), ("paper", PaperAugment)])
@pytest.mark.parametrize("schedule", ["random", "alternating"])
def test_the_transforms_take_the_runs_flip_options(augment, kind, schedule):
    cfg = TrainConfig(augment=augment, flip_schedule=schedule)
    preprocess = build_preprocess(cfg, NORM, 32, 40)
    assert isinstance(preprocess, kind)
    assert (preprocess.flip, preprocess.flip_schedule) == (True, schedule)
    assert build_preprocess(TrainConfig(augment=augment, flip=False), NORM, 32, 40).flip is False
