"""``--recipe paper`` end to end on a generated JPEG tree: stores, the paper's augmentation and update rule,
top-1/top-5 errors, resume exactness, prediction, and the recipe's options."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from npalexnet import optim
from npalexnet.data import DataError
from npalexnet.train import BEST, LAST, Predictor, Protocol, TrainConfig, TrainingInterrupted, fit, load_checkpoint
from npalexnet.train.cli import parse_args
from npalexnet.train.evaluate_only import evaluate_checkpoint
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
    small = {"data_dir": str(data_dir), "out": None if out is None else str(out), "image_size": 40,
             "width": 0.0625, "batch_size": 6, "eval_batch_size": 8, "epochs": 2, "device": "cpu", "progress": False,
             "val_fraction": 0.25}
    return TrainConfig.from_recipe("paper", **{**small, **kwargs})


def meta_protocol(path) -> Protocol:
    return Protocol.of_checkpoint(load_checkpoint(path).meta)


def test_the_recipe_is_the_papers():
    cfg = TrainConfig.from_recipe("paper")
    assert (cfg.variant, cfg.init, cfg.paper_bias, cfg.optimizer, cfg.dropout) == ("paper", "paper", 1.0, "sgd-paper",
                                                                                 0.5)
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


def test_the_command_line_overrides_the_recipe(tmp_path, capsys):
    cfg, given, _ = parse_args(["--recipe", "paper", "--epochs", "3", "--paper-bias", "0.1", "--no-tta"])
    assert (cfg.recipe, cfg.epochs, cfg.paper_bias, cfg.tta, cfg.lr, cfg.nesterov) == ("paper", 3, 0.1, False, 0.01,
                                                                                       False)
    assert cfg.out is None and cfg.runs_name == "paper"           # a new runs/paper/<date_time> for every run
    assert cfg.optimizer == "sgd-paper" and cfg.image_size == 256 and given == {"recipe", "epochs", "paper_bias", "tta"}
    default, given, _ = parse_args([])
    assert default == TrainConfig() and default.nesterov and default.image_size is None and given == set()
    assert default.runs_name == "cifar10"
    # a --config file's recipe sets the defaults under its options; the command line's --recipe wins over it
    (tmp_path / "paper.json").write_text('{"recipe": "paper", "epochs": 5}')
    from_file, _, _ = parse_args(["--config", str(tmp_path / "paper.json"), "--lr", "0.02"])
    assert (from_file.recipe, from_file.epochs, from_file.lr, from_file.optimizer) == ("paper", 5, 0.02, "sgd-paper")
    with pytest.raises(SystemExit):                                 # --help shows the recipe's defaults
        parse_args(["--recipe", "paper", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS total epochs (also with --resume) (default: 90)" in text
    assert "(default: sgd-paper)" in text and "decode size of ImageFolder images (default: 256)" in text


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
    test_line = str(lines[-1])
    assert test_line.startswith(f"test accuracy: {100 * result.test_accuracy:.2f}% (top-1 error "
                                f"{100 * (1 - result.test_accuracy):.2f}%, top-5 error 0.00%; loss ")
    assert test_line.endswith("on 9 images; weights last.npz, epoch 2; 10 views: 5 crops of 35 px and their mirror "
                              "images)")
    assert meta_protocol(tmp_path / "run" / LAST) == result.protocol == Protocol(True, True, 0, 35, 227)
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


def test_a_paper_run_gets_its_own_folder_and_evaluate_reproduces_its_test_line(tree, tmp_path, monkeypatch):
    """The training program's run folders and its one test protocol hold for --recipe paper: runs/paper/<date_time>,
    runs/paper/latest, --resume last, and --evaluate scoring last.npz on the stores with the ten patches."""
    monkeypatch.chdir(tmp_path)
    lines = []
    first = fit(paper_config(tree, None, epochs=1), log=lines.append)
    assert first.out.parent == Path("runs/paper") and lines[0] == f"run: {first.out}"
    assert (tmp_path / "runs" / "paper" / "latest").resolve() == first.out.resolve()
    assert json.loads((first.out / "config.json").read_text())["config"]["recipe"] == "paper"
    second = fit(paper_config(tree, None, epochs=1), log=lambda *a: None)
    assert second.out != first.out and second.out.parent == first.out.parent   # runs never collide
    scored = []
    result = evaluate_checkpoint(second.out / LAST, log=scored.append)
    assert scored[-1].startswith("test accuracy: ") and scored[-1] == str((second.out / "log.txt").read_text()
                                                                          .splitlines()[-1]).split("  ", 1)[1]
    assert result.protocol == Protocol(True, True, 0, 35, 227) and result.top5 == 1.0
    lines = []
    resumed = fit(paper_config(tree, None, epochs=2, resume="last"), log=lines.append)
    assert resumed.out == second.out and [row["epoch"] for row in resumed.history] == [1, 2]
    assert any(str(line).startswith(f"resumed from {second.out / LAST}") for line in lines)


def test_predict_and_visualize_score_with_the_runs_patches(tree, tmp_path, capsys):
    """The checkpoint's protocol (the paper's ten patches) is predict's and visualize's default, so visualize
    prints the run's own test accuracy; --tta-crops 0 is the centre patch."""
    from npalexnet.train import predict_cli, visualize_cli

    result = fit(paper_config(tree, tmp_path / "run", epochs=1), log=lambda *a: None)
    last = str(tmp_path / "run" / LAST)
    assert visualize_cli.main(["--checkpoint", last, "--device", "cpu"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test accuracy"))
    assert line == (f"test accuracy: {100 * result.test_accuracy:.2f}% (on 9 images; weights last.npz, epoch 1; "
                    "10 views: 5 crops of 35 px and their mirror images)")
    image = str(next((tree / "test" / "c001").iterdir()))
    assert predict_cli.main(["--checkpoint", last, image, "--device", "cpu"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == (f"{last}: weights last.npz, epoch 1; 10 views: 5 crops of 35 px and their mirror images; "
                      "device cpu")
    assert predict_cli.main(["--checkpoint", last, image, "--device", "cpu", "--tta-crops", "0"]) == 0
    assert "; the centre crop and its mirror image; " in capsys.readouterr().out.splitlines()[0]


@pytest.mark.gpu
def test_a_paper_mode_run_on_the_gpu_is_the_cpu_run_and_predicts_there(tree, tmp_path, capsys):
    """The paper's augmentation, update rule and ten-patch test with ``--device cuda``: the same run as on
    the CPU to float32 rounding (im2col on both, so that only the GEMMs' summation orders differ), and
    its checkpoint predicts on the GPU with the run's protocol."""
    from npalexnet import config
    from npalexnet.train import predict_cli

    with config.using(conv="im2col"):
        cpu = fit(paper_config(tree, tmp_path / "cpu"), log=lambda *a: None)
    gpu = fit(paper_config(tree, tmp_path / "cuda", device="cuda"), log=lambda *a: None)
    for a, b in zip(read_metrics_csv(tmp_path / "cpu" / "metrics.csv"),
                    read_metrics_csv(tmp_path / "cuda" / "metrics.csv"), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4), (a, b)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4), (a, b)
    assert gpu.protocol == cpu.protocol and gpu.test_loss == pytest.approx(cpu.test_loss, rel=1e-4)
    image = str(next((tree / "test" / "c001").iterdir()))
    assert predict_cli.main(["--checkpoint", str(tmp_path / "cuda" / LAST), image, "--device", "cuda"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("device cuda")


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
