"""The one test protocol: the views named, saved in checkpoints, read back with fallbacks, changed by options."""

from __future__ import annotations

import pytest

from npalexnet.data.paper_augment import PaperAugment
from npalexnet.data.augment import Preprocess
from npalexnet.train import TrainConfig, pipeline
from npalexnet.train.protocol import Protocol, score_line, weights_name

TEN_CIFAR = Protocol(mirror=True, five=True, pad=2)
TEN_PATCHES = Protocol(mirror=True, five=True, window=227, out_size=227)


def test_the_views_are_named():
    assert Protocol.of_options(True, 2) == TEN_CIFAR
    assert TEN_CIFAR.describe() == "10 views: 5 crops at +-2 px and their mirror images"
    assert Protocol.of_options(False, 3).describe() == "5 views: 5 crops at +-3 px"
    assert TEN_PATCHES.describe() == "10 views: 5 crops of 227 px and their mirror images"
    assert Protocol(window=227).describe() == "the centre crop" and Protocol().describe() == "the image"
    assert Protocol(mirror=True).describe() == "the image and its mirror image"
    assert Protocol(mirror=True).count == 2 and Protocol(five=True).count == 5 and TEN_PATCHES.count == 10
    with pytest.raises(ValueError, match="does not fit"):
        Protocol(window=12).origins(10)


def test_a_runs_protocol_follows_its_pipeline():
    """The default run tests on the ten views of the padded image, validates on flips; paper mode on the
    paper's ten patches of the stored image, validating on the centre patch and its reflection."""
    cfg = TrainConfig()
    cifar = Preprocess([0.5] * 3, [0.25] * 3, 32)
    assert pipeline.protocol(cfg, cifar, final=True) == TEN_CIFAR
    assert pipeline.protocol(cfg, cifar, final=False) == Protocol(mirror=True)
    paper = TrainConfig.from_recipe("paper")
    augment = PaperAugment([0.5] * 3, [1 / 255] * 3, [1.0] * 3, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], 227, 256)
    assert pipeline.protocol(paper, augment, final=True) == TEN_PATCHES
    assert pipeline.protocol(paper, augment, final=False) == Protocol(mirror=True, window=227, out_size=227)


def test_a_checkpoints_protocol_and_its_fallbacks():
    assert Protocol.of_checkpoint({"test_protocol": TEN_PATCHES.to_dict()}) == TEN_PATCHES   # saved by a run
    assert Protocol.from_dict(TEN_CIFAR.to_dict()) == TEN_CIFAR
    # earlier checkpoints: the {tta, crops} form, a run's options, a paper-mode checkpoint's crop size, nothing
    assert Protocol.of_checkpoint({"test_protocol": {"tta": False, "crops": 1}}) == Protocol.of_options(False, 1)
    assert Protocol.of_checkpoint({"config": {"tta": True, "tta_crops": 2}}) == TEN_CIFAR
    assert Protocol.of_checkpoint({"config": {"tta": True, "tta_crops": 1}, "crop_size": 227,
                                   "input_size": 227}) == TEN_PATCHES
    assert Protocol.of_checkpoint({}) == Protocol(mirror=True)


def test_the_options_change_the_views_in_the_protocols_geometry():
    assert TEN_CIFAR.replace(tta=False) == Protocol(five=True, pad=2) and TEN_CIFAR.replace() == TEN_CIFAR
    assert TEN_CIFAR.replace(crops=0) == Protocol(mirror=True) and TEN_CIFAR.replace(crops=3).pad == 3
    # paper patches: --tta-crops P > 0 the ten patches, 0 the centre one; never padding
    assert TEN_PATCHES.replace(crops=0) == Protocol(mirror=True, window=227, out_size=227)
    assert Protocol(window=227, out_size=227).replace(tta=True, crops=4) == TEN_PATCHES


def test_the_test_line_names_weights_and_views():
    assert weights_name("runs/x/last.npz", 30) == "last.npz, epoch 30"
    assert weights_name("runs/x/last.npz", 3, partial_steps=17) == "last.npz, epoch 4, step 17"
    assert score_line(0.8516, 0.83641, "best.npz, epoch 28", TEN_CIFAR, 10000) == (
        "test accuracy: 85.16% (loss 0.8364 on 10,000 images; weights best.npz, epoch 28; 10 views: 5 crops at "
        "+-2 px and their mirror images)")
    assert score_line(0.5, None, "last.npz, epoch 1", Protocol()) == (
        "test accuracy: 50.00% (weights last.npz, epoch 1; the image)")
    assert score_line(0.588, 1.5, "last.npz, epoch 90", TEN_PATCHES, 50000, top5=0.831) == (
        "test accuracy: 58.80% (top-1 error 41.20%, top-5 error 16.90%; loss 1.5000 on 50,000 images; weights "
        "last.npz, epoch 90; 10 views: 5 crops of 227 px and their mirror images)")
