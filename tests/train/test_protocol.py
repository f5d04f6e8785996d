"""The one evaluation protocol: the views named, saved in checkpoints, read back with fallbacks."""

from __future__ import annotations

from npalexnet.train import TrainConfig
from npalexnet.train.protocol import Protocol, score_line, weights_name


def test_the_views_are_named():
    assert Protocol(True, 2).describe() == "10 views: 5 crops at +-2 px and their mirror images"
    assert Protocol(False, 3).describe() == "5 views: 5 crops at +-3 px"
    assert Protocol(True, 0).describe() == "flip averaging" and Protocol(False, 0).describe() == "the image"


def test_a_runs_protocol_and_a_checkpoints():
    assert Protocol.of_run(TrainConfig()) == Protocol(True, 2)   # the default run's ten views
    assert Protocol.of_checkpoint({"test_protocol": {"tta": False, "crops": 1}}) == Protocol(False, 1)
    assert Protocol.of_checkpoint({"config": {"tta": True, "tta_crops": 2}}) == Protocol(True, 2)   # older files
    assert Protocol.of_checkpoint({}) == Protocol(True, 0)
    assert Protocol(True, 2).replace(tta=False) == Protocol(False, 2)
    assert Protocol(True, 2).replace(crops=0) == Protocol(True, 0) and Protocol(True, 2).replace() == Protocol(True, 2)


def test_the_test_line_names_weights_and_views():
    assert weights_name("runs/x/last.npz", 30) == "last.npz, epoch 30"
    assert weights_name("runs/x/last.npz", 3, partial_steps=17) == "last.npz, epoch 4, step 17"
    assert score_line(0.8516, 0.83641, "best.npz, epoch 28", Protocol(True, 2), 10000) == (
        "test accuracy: 85.16% (loss 0.8364 on 10,000 images; weights best.npz, epoch 28; 10 views: 5 crops at "
        "+-2 px and their mirror images)")
    assert score_line(0.5, None, "last.npz, epoch 1", Protocol(False, 0)) == (
        "test accuracy: 50.00% (weights last.npz, epoch 1; the image)")
