"""``--recipe paper`` end to end on a generated JPEG tree: stores, the paper's augmentation and update rule,
top-1/top-5 errors, resume exactness, prediction, and the recipe's options."""

from __future__ import annotations

import importlib.util
import math

import pytest

from npalexnet import optim
from npalexnet.data import DataError
from npalexnet.train import BEST, LAST, Predictor, TrainConfig, TrainingInterrupted, fit, load_checkpoint
from npalexnet.train import run as run_module
from npalexnet.train.config import RECIPES, build_model, build_optimizer, build_scheduler, model_kwargs
from npalexnet.train.history import read_metrics_csv
from tests.fakedata import write_cifar_batches, write_jpeg_tree

from .test_run import _assert_same_weights, _StopAfter, _weights
from .test_scripts import TRAIN, _one_line_error, _run


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_jpeg_tree(tmp_path_factory.mktemp("paper") / "tree", classes=3, train_per_class=8,
                           test_per_class=3)


def paper_config(data_dir, out, **kwargs) -> TrainConfig:
    small = {"data_dir": str(data_dir), "out": str(out), "image_size": 40, "width": 0.0625, "batch_size": 6,
             "eval_batch_size": 8, "epochs": 2, "device": "cpu", "progress": False, "val_fraction": 0.25}
    return TrainConfig.from_recipe("paper", **{**small, **kwargs})


def test_the_recipe_is_the_papers():
    cfg = TrainConfig.from_recipe("paper")
    assert (cfg.variant, cfg.init, cfg.paper_bias, cfg.optimizer) == ("paper", "paper", 1.0, "sgd-paper")
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (0.01, 0.9, 5e-4, 128, 90)
    assert (cfg.schedule, cfg.gamma, cfg.max_lr_drops, cfg.label_smoothing) == ("plateau", 0.1, 3, 0.0)
    assert (cfg.augment, cfg.image_size, cfg.resize_rule, cfg.lighting, cfg.tta_crops) == ("paper", 256, "crop", 0.1, 1)
    assert TrainConfig.from_recipe("paper", epochs=3, lr=0.02).epochs == 3
    assert TrainConfig.from_recipe("default") == TrainConfig() and RECIPES["default"] == {}
    model = build_model(model_kwargs(cfg.__class__.from_recipe("paper", width=0.0625, paper_bias=0.1), 5, 3))
    assert float(model.features[4].bias.data[0]) == pytest.approx(0.1)          # conv2's bias
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, optim.PaperSGD)
    scheduler, per_step = build_scheduler(cfg, optimizer, 10)
    assert not per_step and scheduler.max_reductions == 3 and scheduler.factor == 0.1
    with pytest.raises(ValueError, match="--recipe must be one of"):
        TrainConfig.from_recipe("alexnet2")


def test_the_command_line_overrides_the_recipe():
    spec = importlib.util.spec_from_file_location("train_script", TRAIN)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cfg = script.parse_args(["--recipe", "paper", "--epochs", "3", "--paper-bias", "0.1", "--no-tta"])
    assert (cfg.recipe, cfg.epochs, cfg.paper_bias, cfg.tta, cfg.lr, cfg.nesterov) == ("paper", 3, 0.1, False, 0.01,
                                                                                       False)
    assert cfg.out == "runs/paper" and cfg.optimizer == "sgd-paper" and cfg.image_size == 256
    default = script.parse_args([])
    assert default == TrainConfig() and default.nesterov and default.image_size is None


def test_a_paper_mode_run(tree, tmp_path):
    lines = []
    result = fit(paper_config(tree, tmp_path / "run"), log=lines.append)
    text = "\n".join(map(str, lines))
    cache = tree / ".npalexnet-cache"
    assert len(list(cache.glob("*-40px-crop-3ch-*.index.npz"))) == 2           # train/ and test/ stores
    assert "18 train, 6 validation, 9 test images of 3x40x40" in text
    assert "sgd-paper lr 0.01 (plateau)" in text
    epochs = [line for line in lines if str(line).startswith("epoch ")]
    assert len(epochs) == 2 and all("top-1 error" in line and "top-5 error" in line for line in epochs)
    assert sum(str(line).startswith("data: read") for line in lines) == 2
    assert "(10 views: 5 crops of 35 px and their mirror images)" in text
    assert f"test top-1 error {100 * (1 - result.test_accuracy):.2f}%" in text
    assert result.test_top5 == 1.0                                               # 3 classes: always in the top 5
    rows = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    assert [r["val_top5"] for r in rows] == [1.0, 1.0]
    meta = load_checkpoint(tmp_path / "run" / LAST).meta
    assert (meta["crop_size"], meta["resize_rule"], meta["image_size"], meta["input_size"]) == (35, "crop", 40, 227)
    assert meta["std"] == [1 / 255] * 3 and len(meta["eigvals"]) == 3 and meta["eigvals"][0] >= meta["eigvals"][2]
    assert meta["model_kwargs"]["init"] == "paper" and meta["model_kwargs"]["paper_bias"] == 1.0
    assert all(key.endswith("/velocity") for key in load_checkpoint(tmp_path / "run" / LAST).optimizer)
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    top = Predictor.from_checkpoint(tmp_path / "run" / BEST, crops=1).topk([next((tree / "test" / "c001").iterdir())])
    assert len(top[0]) == 3 and abs(sum(p for _, p in top[0]) - 1) < 1e-5


@pytest.mark.slow
def test_an_interrupted_paper_run_resumes_to_the_same_weights(tree, tmp_path, monkeypatch):
    fit(paper_config(tree, tmp_path / "full"), log=lambda *a: None)
    with monkeypatch.context() as m:
        m.setattr(run_module, "GracefulInterrupt", lambda log=None: _StopAfter(2))   # mid-epoch 1 (3 steps)
        with pytest.raises(TrainingInterrupted):
            fit(paper_config(tree, tmp_path / "cut"), log=lambda *a: None)
    fit(paper_config(tree, tmp_path / "cut", resume=True), log=lambda *a: None)
    _assert_same_weights(_weights(tmp_path / "full" / LAST), _weights(tmp_path / "cut" / LAST))


def test_paper_mode_needs_an_imagefolder_tree(tmp_path):
    write_cifar_batches(tmp_path / "pickles", per_batch=4, test=4)
    with pytest.raises(DataError, match="paper mode.*ImageFolder tree"):
        fit(paper_config(tmp_path / "pickles", tmp_path / "run"), log=lambda *a: None)


@pytest.mark.slow
def test_the_script_runs_the_paper_recipe(tree, tmp_path):
    proc = _run(TRAIN, "--recipe", "paper", "--data-dir", tree, "--out", tmp_path / "run", "--image-size", "40",
                "--width", "0.0625", "--batch-size", "6", "--epochs", "1", "--no-progress", "--device", "cpu",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "top-5 error" in proc.stdout and proc.stdout.splitlines()[-1].startswith("test accuracy: ")
    assert "--recipe" in _run(TRAIN, "--recipe", "paper", "--help").stdout
    error = _one_line_error(_run(TRAIN, "--recipe", "paper", "--data-dir", tmp_path / "run", cwd=tmp_path))
    assert "ImageFolder tree" in error
