"""The training program's command line, in-process: options given, --config, --evaluate, progress, the log."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from npalexnet import nn
from npalexnet.train import TrainConfig, fit
from npalexnet.train.cli import main, parse_args
from npalexnet.train.config import build_model, model_kwargs
from npalexnet.train.evaluate_only import EvaluateOptionsError, EvaluateRequest, evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--width", "0.125", "--batch-size", "16", "--eval-batch-size", "8", "--device", "cpu", "--val-fraction",
        "0.2", "--no-progress"]


@pytest.fixture(scope="module")
def finished_run(cifar_dir, tmp_path_factory):
    """A 2-epoch run through the program; its printed lines."""
    out = tmp_path_factory.mktemp("run")
    lines = []
    cfg, given, _ = parse_args(["--data-dir", str(cifar_dir), "--out", str(out), "--epochs", "2", *TINY])
    result = fit(cfg, log=lines.append, command=["npalexnet-train"], given=given)
    return out, lines, result


def test_the_options_the_command_line_names_are_known(tmp_path):
    cfg, given, evaluate = parse_args(["--lr", "0.1", "--no-tta", "--resume"])
    assert given == {"lr", "tta", "resume"} and evaluate is None
    assert parse_args(["--evaluate", "x.npz"])[1:] == (set(), EvaluateRequest("x.npz", "test"))
    assert parse_args(["--evaluate", "x.npz", "--split", "validation", "--tta-crops", "0"])[1:] == (
        {"tta_crops"}, EvaluateRequest("x.npz", "validation"))
    assert (cfg.lr, cfg.tta, cfg.resume, cfg.batch_size) == (0.1, False, "last", 128)
    assert parse_args(["--resume", "runs/x"])[0].resume == "runs/x"
    assert parse_args([])[0] == TrainConfig() and parse_args([])[1] == set()
    assert parse_args(["--no-test"])[:2] == (TrainConfig(test=False), {"test"})
    assert parse_args(["--sam", "0.05", "--sam-epochs", "3"])[:2] == (TrainConfig(sam=0.05, sam_epochs=3),
                                                                      {"sam", "sam_epochs"})
    assert parse_args(["--save-every", "5"])[:2] == (TrainConfig(save_every=5), {"save_every"})
    assert parse_args(["--clip-grad-norm", "2"])[:2] == (TrainConfig(clip_grad_norm=2.0), {"clip_grad_norm"})
    assert parse_args(["--random-erase", "0.25"])[:2] == (TrainConfig(random_erase=0.25), {"random_erase"})
    assert parse_args(["--mixup-alpha", "0.2", "--cutmix-alpha", "1"])[:2] == (
        TrainConfig(mixup_alpha=0.2, cutmix_alpha=1.0), {"mixup_alpha", "cutmix_alpha"})
    assert parse_args(["--flip-schedule", "alternating"])[:2] == (TrainConfig(flip_schedule="alternating"),
                                                                  {"flip_schedule"})


def test_a_config_file_gives_defaults_the_command_line_overrides(tmp_path):
    (tmp_path / "c.json").write_text('{"lr": 0.02, "epochs": 7, "variant": "bn"}')
    cfg, given, _ = parse_args(["--config", str(tmp_path / "c.json"), "--epochs", "3"])
    assert (cfg.lr, cfg.epochs, cfg.variant) == (0.02, 3, "bn")
    assert given == {"lr", "epochs", "variant"}


def test_no_flip_with_a_flip_schedule_is_one_line(capsys):
    assert parse_args(["--no-flip"])[0].flip is False   # the schedule's default then schedules nothing
    with pytest.raises(SystemExit) as done:
        parse_args(["--no-flip", "--flip-schedule", "alternating"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--flip-schedule with --no-flip: without flips there is nothing to schedule; give one of them")


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0
    assert "training images per step (default: 128)" in re.sub(r"\s+", " ", text)
    assert "--resume [RUN]" in text and "--evaluate CHECKPOINT" in text and "--config FILE" in text
    for option in ("--ema DECAY", "--ema-warmup, --no-ema-warmup", "--ema-every K", "--bias-decay, --no-bias-decay",
                   "--no-test", "--flip-schedule {random,alternating}", "--sam RHO", "--sam-epochs K",
                   "--save-every N"):
        assert option in text, option


def test_the_default_recipe_is_the_one_the_readme_states(capsys):
    """The recipe issue 15 chose on the validation split (benchmarks/RESULTS.md); the README's numbers are its."""
    cfg = parse_args([])[0]
    assert (cfg.variant, cfg.lrn, cfg.dropout, cfg.batch_size, cfg.epochs, cfg.val_fraction) == \
        ("cifar", None, 0.3, 128, 30, 0.0)
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov, cfg.schedule, cfg.warmup) == \
        ("sgd", 0.05, 0.9, True, "onecycle", 0.15)
    assert (cfg.weight_decay, cfg.bias_decay, cfg.label_smoothing, cfg.ema, cfg.ema_every, cfg.tta_crops) == \
        (5e-4, True, 0.1, 0.997, 4, 2)
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    assert "dropout 0.3 on the inputs of the two hidden FC layers" in readme
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "hidden FC layers (default: 0.3)" in re.sub(r"\s+", " ", capsys.readouterr().out)
    with pytest.raises(SystemExit):                    # the paper's recipe keeps the paper's rate (Section 4.2)
        main(["--recipe", "paper", "--help"])
    assert "hidden FC layers (default: 0.5)" in re.sub(r"\s+", " ", capsys.readouterr().out)


def test_init_kaiming_is_an_option_the_model_and_its_saved_arguments_keep(capsys):
    cfg = parse_args(["--init", "kaiming"])[0]
    kwargs = model_kwargs(cfg, 10, 3)
    assert cfg.init == "kaiming" and kwargs["init"] == "kaiming" and "paper_bias" not in kwargs
    model = build_model(kwargs)
    assert not any(m.bias.data.any() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "{torch,paper,kaiming}" in capsys.readouterr().out


def test_the_run_names_its_folder_first_and_logs_eta_best_and_the_test(finished_run):
    out, lines, result = finished_run
    text = [str(line) for line in lines]
    assert text[0] == f"run: {out}"
    epochs = [line for line in text if line.startswith("epoch ")]
    assert len(epochs) == 2 and re.search(r"\| eta \d+s", epochs[0]) and " | eta 0s" in epochs[1]
    assert re.fullmatch(rf"best validation accuracy \d+\.\d\d% at epoch [12]: {re.escape(str(out / 'best.npz'))}",
                        text[-2])
    assert re.fullmatch(r"test accuracy: \d+\.\d\d% \(loss \d\.\d{4} on 10 images; weights last\.npz, epoch 2; "
                        r"10 views: 5 crops at \+-2 px and their mirror images\)", text[-1])
    assert result.weights == "last.npz, epoch 2"
    logged = [line[21:] for line in (out / "log.txt").read_text().splitlines()]
    assert logged[0] == f"run: {out}" and logged[-1] == text[-1]


def test_evaluate_reproduces_the_runs_own_test_exactly(finished_run, capsys):
    out, lines, result = finished_run
    scored = evaluate_checkpoint(out / "last.npz", log=lambda *a: None)
    assert (scored.loss, scored.accuracy) == (result.test_loss, result.test_accuracy)   # bit for bit
    assert main(["--evaluate", str(out / "last.npz"), "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(lines[-1])   # the very line the run printed


def test_evaluate_names_best_and_takes_other_views(finished_run, capsys):
    out, _, _ = finished_run
    assert main(["--evaluate", str(out / "best.npz"), "--no-tta", "--tta-crops", "0"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"test accuracy: .* weights best\.npz, epoch [12]; the image\)", last), last


def test_evaluate_split_validation_scores_the_images_the_run_held_out(finished_run, capsys):
    """With the run's per-epoch views (the flips), the score of last.npz on --split validation is the run's own
    validation of its last epoch, bit for bit: the same images, weights and protocol."""
    out, _, result = finished_run
    last = result.history[-1]
    flips_only = TrainConfig(tta_crops=0)
    scored = evaluate_checkpoint(out / "last.npz", flips_only, {"tta_crops"}, log=lambda *a: None, split="validation")
    assert (scored.loss, scored.accuracy) == (last["val_loss"], last["val_acc"])
    assert scored.count == 12 and scored.protocol.describe() == "the image and its mirror image"
    # the final test's ten views on the same images, from the command line; named as validation
    assert main(["--evaluate", str(out / "last.npz"), "--split", "validation", "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert re.search(r": 12 validation images \(", printed[-2]), printed
    assert re.fullmatch(r"validation accuracy: \d+\.\d\d% \(loss \d\.\d{4} on 12 images; weights last\.npz, "
                        r"epoch 2; 10 views: 5 crops at \+-2 px and their mirror images\)", printed[-1]), printed


def test_evaluate_split_errors_are_one_line(finished_run, tmp_path, capsys):
    import json

    import numpy
    out, _, _ = finished_run
    with pytest.raises(SystemExit) as stop:   # nothing to choose a split for
        main(["--split", "validation"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].endswith("error: --split chooses the images --evaluate scores; a "
                                                     "training run validates on its --val-fraction split and "
                                                     "tests on the test split"), err
    with numpy.load(out / "last.npz") as z:   # the same weights, from a run that held out nothing
        entries = {k: z[k] for k in z.files}
    meta = json.loads(str(entries["meta"]))
    meta["config"]["val_fraction"] = 0.0
    entries["meta"] = numpy.array(json.dumps(meta))
    numpy.savez(tmp_path / "all.npz", **entries)
    assert main(["--evaluate", str(tmp_path / "all.npz"), "--split", "validation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --split validation: the run of {tmp_path / 'all.npz'} held out no validation images "
                   f"(--val-fraction 0); it can be scored on the test split only"], err
    with pytest.raises(EvaluateOptionsError, match="--split must be one of test, validation, got 'train'"):
        evaluate_checkpoint(out / "last.npz", split="train")


def test_evaluate_refuses_recipe_options(finished_run, capsys):
    out, _, _ = finished_run
    assert main(["--evaluate", str(out / "last.npz"), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --evaluate scores a saved run: --lr cannot apply") and "\n" not in err


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert main(["--evaluate", str(tmp_path / "none.npz")]) == 1
    assert capsys.readouterr().err.strip() == f"error: no checkpoint at {tmp_path / 'none.npz'}"
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 cut short")
    assert main(["--evaluate", str(tmp_path / "cut.npz")]) == 1
    assert "corrupt or truncated" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal, progress", [(True, True), (False, True), (True, False)])
def test_progress_bars_only_on_a_terminal_and_never_with_no_progress(cifar_dir, tmp_path, monkeypatch, terminal,
                                                                     progress):
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    cfg = TrainConfig(data_dir=str(cifar_dir), out=str(tmp_path), width=0.125, batch_size=16, eval_batch_size=8,
                      device="cpu", val_fraction=0.2, epochs=1, progress=progress)
    fit(cfg, log=lambda *a: None)
    bars = err.getvalue()
    if terminal and progress:   # training, validation and the final test each show a bar
        assert "epoch 1/1" in bars and "validation" in bars and "test" in bars
    else:
        assert bars == ""


def test_the_console_entry_points_are_the_programs():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"npalexnet-train", "npalexnet-predict", "npalexnet-visualize", "npalexnet-export",
                            "npalexnet-gradcheck"}
    for target in scripts.values():
        module, name = target.split(":")
        assert callable(getattr(import_module(module), name))


def test_python_dash_m_npalexnet_train(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "npalexnet.train", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=120, check=False)
    assert proc.returncode == 0 and "usage: npalexnet-train" in proc.stdout, proc.stderr


def _forged(finished_run, tmp_path):
    """The run's last.npz with its meta claiming a wider net than its weights: a checkpoint of another model."""
    import json

    import numpy
    out, _, _ = finished_run
    with numpy.load(out / "last.npz") as z:
        entries = {k: z[k] for k in z.files}
    meta = json.loads(str(entries["meta"]))
    meta["model_kwargs"]["width"] = 0.25
    entries["meta"] = numpy.array(json.dumps(meta))
    numpy.savez(tmp_path / "other.npz", **entries)
    return tmp_path / "other.npz"


def test_a_checkpoint_of_another_model_is_one_line_everywhere(finished_run, tmp_path, capsys):
    from npalexnet.train.predict_cli import main as predict_main
    from tests.fakedata import write_imagefolder

    forged = _forged(finished_run, tmp_path)
    image = next(write_imagefolder(tmp_path / "img", per_class=1, classes=("a",), split=False).rglob("*.png"))
    for program, args in ((main, ["--evaluate", str(forged)]),
                          (predict_main, ["--checkpoint", str(forged), str(image)])):
        status = program(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 1 and len(err) == 1 and err[0].startswith(f"error: {forged} does not fit this model"), err


def test_init_from_another_variant_is_one_line(finished_run, cifar_dir, tmp_path, capsys):
    import npalexnet
    from npalexnet.models import alexnet
    from npalexnet.train import save_checkpoint

    npalexnet.manual_seed(0)
    save_checkpoint(tmp_path / "bn.npz", alexnet("bn", num_classes=10, width=0.0625))
    status = main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "run"), "--init-from",
                   str(tmp_path / "bn.npz"), "--epochs", "1", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and err[0].startswith("error: ") and "bn.npz" in err[0], err


def test_a_swa_start_inside_a_warm_up_in_steps_is_one_line(cifar_dir, tmp_path, capsys):
    """A warm-up given in steps meets --swa's start only once the run's length is known."""
    status = main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "run"), "--swa", "0.2", "--warmup", "4",
                   "--epochs", "2", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err == ["error: --swa 0.2 starts at step 1, inside the warm-up of 4 steps: start it "
                                   "later or shorten the warm-up"], err
    assert not (tmp_path / "run" / "last.npz").exists()


@pytest.mark.parametrize("schedule", ["onecycle", "warmup-cosine"])
def test_a_warm_up_longer_than_the_run_is_one_line(cifar_dir, tmp_path, capsys, schedule):
    status = main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "run"), "--schedule", schedule,
                   "--warmup", "1000", "--epochs", "2", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err == ["error: --warmup 1000: a warm-up of 1000 steps does not fit in this run's 6 "
                                   "(2 epochs of 3 steps); give a fraction in [0, 1) or at most 6 steps"], err
    assert not (tmp_path / "run" / "last.npz").exists()


def test_error_lines():
    import errno

    from npalexnet.train.cli_common import error_line
    assert error_line(MemoryError()) == "out of memory (MemoryError); try a smaller --batch-size"
    assert error_line(PermissionError(errno.EACCES, "Permission denied", "/data/x")) == "Permission denied: /data/x"
    assert error_line(ValueError("a bug")) is None   # a bug keeps its traceback
