"""Small pieces of the training package: configuration, schedules, evaluation with flips, metrics, Ctrl-C."""

from __future__ import annotations

import os
import signal

import numpy
import pytest

from npalexnet import nn
from npalexnet.data import BatchLoader, Preprocess, Split, hflip
from npalexnet.models import alexnet
from npalexnet.train import TrainConfig, build_optimizer, build_scheduler, evaluate, predict_proba, softmax
from npalexnet.train.config import merge_for_resume
from npalexnet.train.history import plot_curves, read_metrics_csv, write_metrics_csv
from npalexnet.train.interrupt import GracefulInterrupt


def test_defaults_are_the_anchor_recipe():
    cfg = TrainConfig()
    assert (cfg.variant, cfg.batch_size, cfg.optimizer, cfg.nesterov, cfg.momentum, cfg.lr, cfg.warmup,
            cfg.weight_decay, cfg.label_smoothing, cfg.padding, cfg.pad, cfg.flip, cfg.tta, cfg.epochs) == \
        ("cifar", 128, "sgd", True, 0.9, 0.05, 0.15, 5e-4, 0.1, "reflect", 4, True, True, 30)
    assert cfg.tta_crops == 2   # the final test on the paper's ten views (chosen on the validation split)
    model = alexnet("cifar", 10, width=0.0625)
    opt = build_optimizer(cfg, model)
    # weight decay on every parameter, biases included (torch's SGD in the recipe)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 5e-4
    sched, per_step = build_scheduler(cfg, opt, steps_per_epoch=10)
    lrs = []
    for _ in range(300):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert per_step and max(lrs) == pytest.approx(0.05) and lrs.index(max(lrs)) == 44   # 15% of 300 steps
    assert lrs[-1] == pytest.approx(0.05 / 255)


@pytest.mark.parametrize("schedule, kind", [("onecycle", "WarmupLinearLR"), ("warmup-linear", "WarmupLinearLR"),
                                            ("warmup-cosine", "WarmupCosineLR"), ("cosine", "CosineAnnealingLR"),
                                            ("step", "StepLR"), ("plateau", "ReduceLROnPlateau"),
                                            ("constant", "ConstantLR")])
def test_every_schedule_builds(schedule, kind):
    cfg = TrainConfig(schedule=schedule, warmup=0.2)
    opt = build_optimizer(cfg, alexnet("cifar", 10, width=0.0625))
    sched, per_step = build_scheduler(cfg, opt, 5)
    assert type(sched).__name__ == kind and per_step == (schedule != "plateau")
    if schedule.startswith(("onecycle", "warmup")):
        assert sched.warmup_steps == 0.2 * cfg.epochs * 5   # --warmup applies to the warm-up schedules


def test_validation_names_the_option():
    for kwargs, option in [({"epochs": 0}, "--epochs"), ({"val_fraction": 1.0}, "--val-fraction"),
                           ({"schedule": "linear"}, "--schedule"), ({"subset": 0}, "--subset")]:
        with pytest.raises(ValueError, match=option):
            TrainConfig(**kwargs).validate()


def test_resume_keeps_the_recipe_and_takes_the_runtime_options():
    saved = TrainConfig(lr=0.1, epochs=5, out="a").to_dict()
    merged = merge_for_resume(saved, TrainConfig(lr=9.0, epochs=8, out="b", device="cpu"))
    assert (merged.lr, merged.epochs, merged.out, merged.device) == (0.1, 8, "b", "cpu")


def test_flip_averaging_and_evaluate():
    model = alexnet("cifar", 4, width=0.0625).eval()
    x = numpy.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(numpy.float32)
    expected = (softmax(model(x)) + softmax(model(hflip(x, numpy.ones(5, bool))))) / 2
    numpy.testing.assert_allclose(predict_proba(model, x, tta=True), expected, rtol=1e-6)
    numpy.testing.assert_allclose(predict_proba(model, x).sum(axis=1), 1.0, rtol=1e-6)

    images = numpy.random.default_rng(1).integers(0, 256, (7, 3, 32, 32)).astype(numpy.uint8)
    split = Split(images, numpy.arange(7) % 4)
    loader = BatchLoader(split, 3, Preprocess((0.5,) * 3, (0.25,) * 3, 32), train=False)
    for tta in (False, True):
        loss, acc = evaluate(model, loader, nn.CrossEntropyLoss(), tta=tta)
        probs = predict_proba(model, loader.preprocess.eval(images), tta=tta)
        assert acc == pytest.approx(numpy.mean(probs.argmax(1) == split.labels))
        assert loss == pytest.approx(-numpy.mean(numpy.log(probs[numpy.arange(7), split.labels])), rel=1e-4)


def test_metrics_csv_and_curves(tmp_path):
    history = [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "val_loss": None, "val_acc": None, "lr": 0.1},
               {"epoch": 2, "train_loss": 1.5, "train_acc": 0.4, "val_loss": 1.6, "val_acc": 0.35, "lr": 0.05}]
    write_metrics_csv(tmp_path / "m.csv", history)
    rows = read_metrics_csv(tmp_path / "m.csv")
    assert rows[0]["val_acc"] is None and rows[1]["val_acc"] == 0.35 and rows[1]["epoch"] == 2
    plot_curves(tmp_path / "c.png", history)
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_first_ctrl_c_is_a_request_the_second_interrupts():
    before = signal.getsignal(signal.SIGINT)   # default_int_handler, or SIG_IGN under a background job
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _first_ctrl_c_is_a_request_the_second_interrupts()
    finally:
        signal.signal(signal.SIGINT, before)


def _first_ctrl_c_is_a_request_the_second_interrupts():
    with GracefulInterrupt() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("optimizer, rule", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW")])
def test_no_bias_decay_puts_the_one_dimensional_parameters_in_a_group_without_decay(optimizer, rule):
    model = alexnet("bn", 10, width=0.0625)
    opt = build_optimizer(TrainConfig(bias_decay=False, optimizer=optimizer), model)
    assert type(opt).__name__ == rule
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and free["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}
    assert all(p.data.ndim in (2, 4) for p in decayed["params"])   # conv and linear weights
    assert sorted(names[id(p)] for p in free["params"]) == \
        sorted(n for n, p in model.named_parameters() if p.data.ndim == 1)   # biases, BatchNorm's scale and shift
    sched, _ = build_scheduler(TrainConfig(bias_decay=False), opt, 10)   # the schedule sets both groups' lr
    sched.step()
    assert decayed["lr"] == free["lr"]
    assert len(build_optimizer(TrainConfig(), model).param_groups) == 1   # the default: decay on every parameter


@pytest.mark.parametrize("options, name", [({"ema": 1.0}, "--ema"), ({"ema": -0.1}, "--ema"),
                                           ({"ema_every": 0}, "--ema-every"),
                                           ({"sam": -0.1}, "--sam must be a radius >= 0"),
                                           ({"sam_epochs": 0}, "--sam-epochs must be >= 1"),
                                           ({"save_every": -1}, "--save-every must be >= 0 epochs"),
                                           ({"flip_schedule": "often"}, "--flip-schedule must be one of random, "
                                                                        "alternating, got 'often'")])
def test_bad_accuracy_options_name_themselves(options, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**options).validate()


def test_the_sam_radius_of_each_epoch():
    assert [TrainConfig(epochs=4).sam_radius(e) for e in range(4)] == [0.0] * 4              # off by default
    assert [TrainConfig(epochs=4, sam=0.05).sam_radius(e) for e in range(4)] == [0.05] * 4
    assert [TrainConfig(epochs=4, sam=0.05, sam_epochs=1).sam_radius(e) for e in range(4)] == [0, 0, 0, 0.05]
    assert [TrainConfig(epochs=4, sam=0.05, sam_epochs=9).sam_radius(e) for e in range(4)] == [0.05] * 4
