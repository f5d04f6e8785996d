"""``fit`` end to end on tiny generated datasets: resume exactness, Ctrl-C, NaN guard, outputs."""

from __future__ import annotations

import json

import numpy
import pytest

from npalexnet.train import (
    BEST,
    LAST,
    CheckpointError,
    NonFiniteLossError,
    Predictor,
    TrainConfig,
    TrainingInterrupted,
    epoch_checkpoint,
    fit,
    load_checkpoint,
)
from npalexnet.train import run as run_module
from npalexnet.train.history import read_metrics_csv
from tests.fakedata import cifar_archive, write_fashionmnist_raw, write_imagefolder
from tests.fileserver import FileServer, md5, publish_cifar10


def _config(data_dir, out, **kwargs) -> TrainConfig:
    base = {"data_dir": None if data_dir is None else str(data_dir), "out": None if out is None else str(out),
            "width": 0.125,
            "batch_size": 16, "eval_batch_size": 32, "device": "cpu", "progress": False, "val_fraction": 0.2,
            "epochs": 2}
    return TrainConfig(**{**base, **kwargs})


def _weights(path):
    return load_checkpoint(path).model


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name], err_msg=name)


class _StopAfter:
    """Stands in for GracefulInterrupt: "Ctrl-C" after ``steps`` training steps."""

    def __init__(self, steps):
        self.steps, self.calls = steps, 0

    def __call__(self):
        self.calls += 1
        return self.calls >= self.steps

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_outputs_of_a_run(cifar_dir, tmp_path):
    result = fit(_config(cifar_dir, tmp_path, schedule="cosine"), log=lambda *a: None)
    assert {p.name for p in tmp_path.iterdir()} == {LAST, BEST, "metrics.csv", "curves.png", "config.json", "log.txt"}
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0 <= r["val_acc"] <= 1 and r["train_loss"] > 0 for r in rows)
    assert 0.0 <= result.test_accuracy <= 1.0
    meta = load_checkpoint(tmp_path / LAST).meta
    assert meta["epoch"] == 2 and meta["classes"][0] == "airplane" and len(meta["mean"]) == 3
    assert meta["model_kwargs"]["variant"] == "cifar" and isinstance(meta["rng_state"], str)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_is_printed_and_grad_norms_are_logged_and_plotted(cifar_dir, tmp_path):
    lines = []
    fit(_config(cifar_dir, tmp_path, log_grad_norms=True), log=lines.append)
    text = "\n".join(map(str, lines))
    assert "AlexNet summary, input (16, 3, 32, 32)" in text and "classifier.6" in text
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    for row in rows:
        assert row["grad_norm:features.0.weight"] > 0 and row["weight_norm:classifier.6.bias"] > 0
    assert len([k for k in rows[0] if k.startswith("grad_norm:")]) == 16   # every parameter of the net
    from PIL import Image
    with Image.open(tmp_path / "norms.png") as image:
        assert image.size[0] > 500


def test_no_test_never_scores_the_test_split_and_a_resume_tests_it_later(cifar_dir, tmp_path, monkeypatch):
    """--no-test: the run ends after its last epoch without scoring the test split (a run that compares
    recipes on validation); the skip is logged, and a resume of the finished run (or --evaluate) tests it."""
    scored = []
    real_scores = run_module.scores
    monkeypatch.setattr(run_module, "scores", lambda *a, **k: scored.append(k["desc"]) or real_scores(*a, **k))
    lines = []
    untested = fit(_config(cifar_dir, tmp_path, test=False, ema=0.9), log=lines.append)
    assert scored == ["validation", "validation"]   # epochs 1 and 2; no test
    assert untested.test_accuracy is None and untested.test_loss is None and untested.weights == "last.npz, epoch 2"
    assert str(lines[-1]) == (f"test: skipped (--no-test); --evaluate {tmp_path / LAST} tests these weights "
                              f"(last.npz, epoch 2); --split validation scores them on the validation images "
                              f"with the test's views")
    _assert_same_weights(dict(untested.model.state_dict()), load_checkpoint(tmp_path / LAST).ema)   # the average
    tested = fit(_config(cifar_dir, tmp_path, resume=True), log=lines.append)   # not a recipe change
    assert scored[-1] == "test" and 0.0 <= tested.test_accuracy <= 1.0
    assert str(lines[-1]).startswith("test accuracy: ")
    held_none = []   # no validation split: --evaluate can score the test split only, so the line offers only that
    fit(_config(cifar_dir, tmp_path / "all", test=False, val_fraction=0.0, epochs=1), log=held_none.append)
    assert str(held_none[-1]) == (f"test: skipped (--no-test); --evaluate {tmp_path / 'all' / LAST} tests these "
                                  f"weights (last.npz, epoch 1)")


def test_resume_after_a_finished_run_equals_a_longer_run(cifar_dir, tmp_path):
    """A constant schedule does not depend on --epochs, so 1 + 1 epochs = 2 epochs exactly."""
    fit(_config(cifar_dir, tmp_path / "full", schedule="constant"), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path / "split", schedule="constant", epochs=1), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path / "split", schedule="constant", resume=True), log=lambda *a: None)
    _assert_same_weights(_weights(tmp_path / "full" / LAST), _weights(tmp_path / "split" / LAST))
    assert len(read_metrics_csv(tmp_path / "split" / "metrics.csv")) == 2


def test_save_every_keeps_epoch_checkpoints_to_evaluate_or_branch_from(cifar_dir, tmp_path):
    """--save-every N keeps epoch_NNN.npz after every N-th epoch, each the run's state at that epoch (a
    constant schedule: the 2-epoch run's last.npz); --resume of one continues in another folder, to the
    same weights as the run it came from, and leaves that run's files as they were."""
    fit(_config(cifar_dir, tmp_path / "two", schedule="constant"), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path / "run", schedule="constant", epochs=3, save_every=2), log=lambda *a: None)
    kept = tmp_path / "run" / epoch_checkpoint(2)
    assert kept.name == "epoch_002.npz"
    assert sorted(p.name for p in (tmp_path / "run").glob("*.npz")) == [BEST, "epoch_002.npz", LAST]
    assert load_checkpoint(kept).meta["epoch"] == 2 and load_checkpoint(tmp_path / "run" / LAST).meta["epoch"] == 3
    _assert_same_weights(_weights(tmp_path / "two" / LAST), _weights(kept))
    before = kept.read_bytes()
    fit(_config(cifar_dir, tmp_path / "branch", schedule="constant", epochs=3, resume=str(kept)), log=lambda *a: None)
    _assert_same_weights(_weights(tmp_path / "run" / LAST), _weights(tmp_path / "branch" / LAST))
    assert kept.read_bytes() == before and load_checkpoint(tmp_path / "run" / LAST).meta["epoch"] == 3
    assert not list((tmp_path / "branch").glob("epoch_*.npz"))   # epoch 3 is not a multiple of 2


def test_a_one_process_distributed_run_equals_a_plain_run_bit_for_bit(cifar_dir, tmp_path):
    """One random scheme (order, crops, flips and dropout keyed by image index) and one step:
    the data-parallel path with a single process trains the very weights a plain run does."""
    from npalexnet.distributed import SingleProcessCommunicator
    fit(_config(cifar_dir, tmp_path / "plain"), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path / "parallel"), log=lambda *a: None, comm=SingleProcessCommunicator())
    _assert_same_weights(_weights(tmp_path / "plain" / LAST), _weights(tmp_path / "parallel" / LAST))


@pytest.mark.parametrize("stop_after", [2, 3])   # mid-epoch, and at the end of epoch 1 (3 steps per epoch)
def test_interrupted_and_resumed_equals_uninterrupted(cifar_dir, tmp_path, monkeypatch, stop_after):
    fit(_config(cifar_dir, tmp_path / "full"), log=lambda *a: None)
    with monkeypatch.context() as m:
        m.setattr(run_module, "GracefulInterrupt", lambda log=None: _StopAfter(stop_after))
        with pytest.raises(TrainingInterrupted, match="--resume"):
            fit(_config(cifar_dir, tmp_path / "cut"), log=lambda *a: None)
    meta = load_checkpoint(tmp_path / "cut" / LAST).meta
    assert (meta["epoch"], meta["partial"]["steps"]) == ((0, 2) if stop_after == 2 else (1, 0))
    # a resume that sets another recipe stops and names it; without it the saved recipe continues
    with pytest.raises(CheckpointError, match=r"--lr \(saved 0.05, given 99.0\).*--override"):
        fit(_config(cifar_dir, tmp_path / "cut", resume=True, lr=99.0), log=lambda *a: None)
    result = fit(_config(cifar_dir, tmp_path / "cut", resume=True), log=lambda *a: None)
    _assert_same_weights(_weights(tmp_path / "full" / LAST), _weights(tmp_path / "cut" / LAST))
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_sam_runs_in_the_last_epochs_only_and_resumes_exactly(cifar_dir, tmp_path, monkeypatch):
    from npalexnet.train import loop
    radii = []

    def recording_step(*args, epoch, sam_radius=0.0, **kwargs):
        radii.append((epoch, sam_radius))
        return loop_step(*args, epoch=epoch, sam_radius=sam_radius, **kwargs)

    loop_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", recording_step)
    fit(_config(cifar_dir, tmp_path / "full", sam=0.05, sam_epochs=1), log=lambda *a: None)
    assert sorted(set(radii)) == [(0, 0.0), (1, 0.05)]              # plain steps, then SAM in the last epoch
    assert load_checkpoint(tmp_path / "full" / LAST).meta["config"]["sam_epochs"] == 1
    with monkeypatch.context() as m:
        m.setattr(run_module, "GracefulInterrupt", lambda log=None: _StopAfter(4))   # inside the SAM epoch
        with pytest.raises(TrainingInterrupted, match="--resume"):
            fit(_config(cifar_dir, tmp_path / "cut", sam=0.05, sam_epochs=1), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path / "cut", resume=True), log=lambda *a: None)
    _assert_same_weights(_weights(tmp_path / "full" / LAST), _weights(tmp_path / "cut" / LAST))
    plain = tmp_path / "plain"
    fit(_config(cifar_dir, plain), log=lambda *a: None)
    sam_weights, plain_weights = _weights(tmp_path / "full" / LAST), _weights(plain / LAST)
    assert any((sam_weights[name] != plain_weights[name]).any() for name in sam_weights)   # the SAM epoch counted


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(cifar_dir, tmp_path, monkeypatch):
    real = run_module.train_one_epoch

    def poisoned(model, *args, epoch, **kwargs):
        if epoch == 1:   # the weights blow up at the start of epoch 2
            next(iter(model.parameters())).data[...] = numpy.inf
        return real(model, *args, epoch=epoch, **kwargs)

    monkeypatch.setattr(run_module, "train_one_epoch", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2.*last good checkpoint .*epoch 1\) is kept"), \
            numpy.errstate(all="ignore"):
        fit(_config(cifar_dir, tmp_path), log=lambda *a: None)
    ckpt = load_checkpoint(tmp_path / LAST)   # loads: finite weights
    assert ckpt.meta["epoch"] == 1
    assert len(read_metrics_csv(tmp_path / "metrics.csv")) == 1


def test_huge_learning_rate_diverges_without_writing_a_checkpoint(cifar_dir, tmp_path):
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"), numpy.errstate(all="ignore"):
        fit(_config(cifar_dir, tmp_path, lr=1e6, schedule="constant", epochs=3), log=lambda *a: None)
    assert not (tmp_path / LAST).exists()


def test_an_existing_run_is_not_overwritten(cifar_dir, tmp_path):
    fit(_config(cifar_dir, tmp_path, epochs=1), log=lambda *a: None)
    with pytest.raises(CheckpointError, match="--resume"):
        fit(_config(cifar_dir, tmp_path, epochs=1), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path, epochs=1, overwrite=True, schedule="plateau", val_fraction=0.0),
        log=lambda *a: None)


def test_overwrite_replaces_the_whole_run_but_only_once_the_new_one_has_a_checkpoint(cifar_dir, tmp_path):
    """--overwrite: a new run that fails before its first checkpoint leaves the old run whole; once it saves,
    none of the old run's files (its kept epochs, its norms plot) is left to pass for the new run's."""
    fit(_config(cifar_dir, tmp_path, save_every=1, log_grad_norms=True), log=lambda *a: None)
    old = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.name != "log.txt"}
    assert "epoch 2/2" in (tmp_path / "log.txt").read_text()
    assert {"epoch_001.npz", "epoch_002.npz", "norms.png", "config.json", BEST, LAST} <= old.keys()
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"), numpy.errstate(all="ignore"):
        fit(_config(cifar_dir, tmp_path, overwrite=True, lr=1e6, schedule="constant"), log=lambda *a: None)
    assert {name: (tmp_path / name).read_bytes() for name in old} == old
    lines = []
    fit(_config(cifar_dir, tmp_path, epochs=1, overwrite=True, schedule="constant"), log=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, "config.json", "curves.png", LAST, "log.txt",
                                                          "metrics.csv"]
    assert ("overwrite: removed the replaced run's best.npz, curves.png, epoch_001.npz, epoch_002.npz, metrics.csv, "
            "norms.png") in lines
    assert load_checkpoint(tmp_path / BEST).meta["config"]["schedule"] == "constant"
    assert json.loads((tmp_path / "config.json").read_text())["config"]["schedule"] == "constant"
    assert len(read_metrics_csv(tmp_path / "metrics.csv")) == 1
    # log.txt: this run's lines only, from its first line on (the replaced run's and the failed attempt's are gone)
    logged = [line.split("  ", 1)[1] for line in (tmp_path / "log.txt").read_text().splitlines()]
    assert logged == "\n".join(lines).splitlines() and any(line.startswith("epoch 1/1") for line in logged)


def test_best_and_kept_epochs_are_the_epochs_last_checkpoint_and_stay_so(cifar_dir, tmp_path):
    """best.npz and epoch_NNN.npz are given the bytes of the epoch's last.npz (a hard link here, not a second
    serialisation) and keep them when later epochs replace last.npz."""
    import os
    fit(_config(cifar_dir, tmp_path, epochs=1, save_every=1), log=lambda *a: None)
    assert os.path.samefile(tmp_path / LAST, tmp_path / BEST)
    assert os.path.samefile(tmp_path / LAST, tmp_path / "epoch_001.npz")
    epoch_1 = (tmp_path / LAST).read_bytes()
    fit(_config(cifar_dir, tmp_path, epochs=2, save_every=1, resume=True), log=lambda *a: None)
    assert (tmp_path / "epoch_001.npz").read_bytes() == epoch_1
    assert load_checkpoint(tmp_path / "epoch_002.npz").meta["epoch"] == 2
    assert load_checkpoint(tmp_path / BEST).meta["epoch"] in (1, 2)


def test_flat_imagefolder_on_the_paper_variant_and_predict(tmp_path):
    """ImageFolder without test/, computed normalisation, resize to 227, then top-k prediction."""
    data = write_imagefolder(tmp_path / "data", per_class=2, classes=("a", "b", "c"), size=24, split=False)
    cfg = _config(data, tmp_path / "out", dataset="imagefolder", variant="paper", width=0.0625, image_size=16,
                  batch_size=4, epochs=1, val_fraction=0.0, optimizer="adam", lr=1e-3)
    fit(cfg, log=lambda *a: None)
    meta = load_checkpoint(tmp_path / "out" / LAST).meta
    assert meta["input_size"] == 227 and meta["image_size"] == 16 and meta["classes"] == ["a", "b", "c"]
    predictor = Predictor.from_checkpoint(tmp_path / "out" / BEST)
    top = predictor.topk([next((data / "b").iterdir())], k=5)
    assert len(top[0]) == 3 and abs(sum(p for _, p in top[0]) - 1) < 1e-5
    assert [p for _, p in top[0]] == sorted((p for _, p in top[0]), reverse=True)


def test_fashionmnist_is_one_channel_resized_to_the_cifar_net(tmp_path):
    write_fashionmnist_raw(tmp_path / "data", train=16, test=8)
    fit(_config(tmp_path / "data", tmp_path / "out", dataset="fashionmnist", epochs=1, val_fraction=0.25),
        log=lambda *a: None)
    meta = load_checkpoint(tmp_path / "out" / LAST).meta
    assert (meta["in_channels"], meta["image_size"], meta["input_size"], len(meta["mean"])) == (1, 28, 32, 1)


def test_default_run_downloads_cifar10_from_the_mirror_it_is_given(tmp_path, monkeypatch):
    """No --data-dir: the archive is fetched from --download-url into --root, then read; a resume
    finds the copy and asks nothing of the network."""
    archive = cifar_archive(per_batch=12, test=10)
    publish_cifar10(monkeypatch, md5(archive))
    with FileServer({"cifar-10-python.tar.gz": archive}) as server:
        cfg = _config(None, tmp_path / "out", root=str(tmp_path / "data"), download_url=server.url, epochs=1)
        lines = []
        fit(cfg, log=lines.append)
        fit(_config(None, tmp_path / "out", root=str(tmp_path / "data"), download_url=server.url, epochs=2,
                    resume=True), log=lines.append)
    assert server.requests == ["cifar-10-python.tar.gz"]
    assert any(line.startswith(f"data: cifar10 from {tmp_path / 'data' / 'cifar-10-batches-py'}: 48 train")
               for line in lines)


def test_tta_crops_evaluates_the_final_test_on_ten_views(cifar_dir, tmp_path, capsys):
    """--tta-crops changes only the final test: same weights, a test on the paper's ten views;
    it may be switched on when resuming (a runtime option)."""
    plain = fit(_config(cifar_dir, tmp_path / "a", epochs=1, tta_crops=0))
    crops = fit(_config(cifar_dir, tmp_path / "b", epochs=1, tta_crops=2))
    _assert_same_weights(_weights(tmp_path / "a" / LAST), _weights(tmp_path / "b" / LAST))
    assert "10 views: 5 crops at +-2 px and their mirror images" in capsys.readouterr().out
    assert crops.test_loss != plain.test_loss
    resumed = fit(_config(cifar_dir, tmp_path / "a", epochs=1, resume=True, tta_crops=2))
    assert resumed.config.tta_crops == 2 and resumed.test_loss == pytest.approx(crops.test_loss, rel=1e-6)


#: The recipe options added since issue 15, all on (the tiny net's gradient norms are 0.15-0.37: every step clips).
ACCURACY_OPTIONS = {"ema": 0.9, "bias_decay": False, "clip_grad_norm": 0.1, "random_erase": 0.5}


def test_ema_no_bias_decay_clipping_and_erasing_are_saved_and_resume_exactly(cifar_dir, tmp_path, monkeypatch):
    fit(_config(cifar_dir, tmp_path / "full", **ACCURACY_OPTIONS), log=lambda *a: None)
    with monkeypatch.context() as m:
        m.setattr(run_module, "GracefulInterrupt", lambda log=None: _StopAfter(2))   # mid-epoch 1
        with pytest.raises(TrainingInterrupted):
            fit(_config(cifar_dir, tmp_path / "cut", **ACCURACY_OPTIONS), log=lambda *a: None)
    resumed = fit(_config(cifar_dir, tmp_path / "cut", resume=True), log=lambda *a: None)
    full, cut = load_checkpoint(tmp_path / "full" / LAST), load_checkpoint(tmp_path / "cut" / LAST)
    _assert_same_weights(full.model, cut.model)
    _assert_same_weights(full.ema, cut.ema)   # the average continues exactly too
    assert {k: cut.meta["config"][k] for k in ACCURACY_OPTIONS} == ACCURACY_OPTIONS
    assert len(cut.meta["optimizer"]["param_groups"]) == 2
    # the average differs from the trained weights, and the returned model (what the test scored) is the average
    assert any(not numpy.array_equal(full.model[k], full.ema[k]) for k in full.model)
    for name, value in resumed.model.state_dict().items():
        numpy.testing.assert_array_equal(value, cut.ema[name], err_msg=name)


def test_swa_holds_the_rate_averages_uniformly_and_resumes_exactly(cifar_dir, tmp_path, monkeypatch):
    """--swa 0.5 over 2 epochs of 3 steps: the rate decays to --swa-lr x peak at step 3 and stays there;
    the average the run saves (and scores) is the plain mean of the weights after steps 4, 5 and 6."""
    from npalexnet.train import loop
    rates, weights = [], []

    def recording_step(model, criterion, optimizer, *args, **kwargs):
        rates.append(optimizer.param_groups[0]["lr"])
        out = loop_step(model, criterion, optimizer, *args, **kwargs)
        weights.append({k: v.copy() for k, v in model.state_dict().items()})
        return out

    loop_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", recording_step)
    options = dict(swa=0.5, swa_lr=0.25, warmup=1, ema_every=1, lr=0.04)
    fit(_config(cifar_dir, tmp_path / "full", **options), log=lambda *a: None)
    numpy.testing.assert_allclose(rates, [0.04, 0.04, 0.025, 0.01, 0.01, 0.01], rtol=1e-12)
    full = load_checkpoint(tmp_path / "full" / LAST)
    assert full.meta["ema"]["uniform_from"] == 3 and full.meta["config"]["swa"] == 0.5
    for name, value in full.ema.items():
        if value.dtype.kind == "f":
            mean = numpy.mean([w[name] for w in weights[3:]], axis=0, dtype=numpy.float64)
            numpy.testing.assert_allclose(value, mean, rtol=1e-5, atol=1e-6, err_msg=name)
    monkeypatch.setattr(loop, "train_step", loop_step)
    with monkeypatch.context() as m:
        m.setattr(run_module, "GracefulInterrupt", lambda log=None: _StopAfter(4))   # inside the uniform phase
        with pytest.raises(TrainingInterrupted):
            fit(_config(cifar_dir, tmp_path / "cut", **options), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path / "cut", resume=True), log=lambda *a: None)
    cut = load_checkpoint(tmp_path / "cut" / LAST)
    _assert_same_weights(full.model, cut.model)
    _assert_same_weights(full.ema, cut.ema)


@pytest.mark.parametrize("options, message", [
    ({"swa": 1.0}, r"--swa must be a fraction of the steps in \[0, 1\)"),
    ({"swa": 0.5, "swa_lr": 0.0}, r"--swa-lr must be a fraction of the peak lr in \(0, 1\]"),
    ({"swa": 0.5, "schedule": "cosine"}, "--swa needs a warm-up schedule that decays to its rate"),
    ({"swa": 0.5, "ema": 0.0}, "give --ema > 0"),
    ({"swa": 0.1, "warmup": 0.15}, r"--swa 0.1 must start after the warm-up \(--warmup 0.15\)"),
])
def test_bad_swa_options_get_one_line(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options).validate()


def test_mixup_and_cutmix_train_on_blended_batches_are_saved_and_resume_exactly(cifar_dir, tmp_path, monkeypatch):
    """Every training step gets (B, K) targets that blend two labels (the loader's, tested in
    tests/data/test_mixing.py); validation gets plain labels; a run cut mid-epoch resumes to the same weights."""
    from npalexnet.train import loop
    targets = []

    def recording_step(model, criterion, optimizer, images, labels, *args, **kwargs):
        targets.append(numpy.asarray(labels))
        return loop_step(model, criterion, optimizer, images, labels, *args, **kwargs)

    loop_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", recording_step)
    options = dict(mixup_alpha=0.4, cutmix_alpha=1.0)
    fit(_config(cifar_dir, tmp_path / "full", **options), log=lambda *a: None)
    assert len(targets) == 6 and all(t.ndim == 2 and t.shape[1] == 10 for t in targets)
    for t in targets:
        numpy.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)
        assert ((t > 0).sum(axis=1) <= 2).all()
    assert any(((t > 0) & (t < 1)).any() for t in targets)   # blended, not one-hot
    monkeypatch.setattr(loop, "train_step", loop_step)
    full = load_checkpoint(tmp_path / "full" / LAST)
    assert (full.meta["config"]["mixup_alpha"], full.meta["config"]["cutmix_alpha"]) == (0.4, 1.0)
    with monkeypatch.context() as m:
        m.setattr(run_module, "GracefulInterrupt", lambda log=None: _StopAfter(2))   # mid-epoch 1
        with pytest.raises(TrainingInterrupted):
            fit(_config(cifar_dir, tmp_path / "cut", **options), log=lambda *a: None)
    fit(_config(cifar_dir, tmp_path / "cut", resume=True), log=lambda *a: None)
    _assert_same_weights(full.model, load_checkpoint(tmp_path / "cut" / LAST).model)
    fit(_config(cifar_dir, tmp_path / "plain"), log=lambda *a: None)
    plain = _weights(tmp_path / "plain" / LAST)
    assert any((full.model[name] != plain[name]).any() for name in plain)   # the blending counted


@pytest.mark.parametrize("options, message", [
    ({"mixup_alpha": -1.0}, r"--mixup-alpha must be in \[0, 2\] \(0: off\), got -1.0"),
    ({"cutmix_alpha": 2.5}, r"--cutmix-alpha must be in \[0, 2\] \(0: off\), got 2.5"),
    ({"mixup_alpha": 0.2, "augment": "paper"}, "blend the splits held in memory .--augment pad-crop.; "
                                               "--augment paper reads its images from disk"),
    ({"clip_grad_norm": -1.0}, r"--clip-grad-norm must be >= 0 \(0: off\), got -1.0"),
    ({"random_erase": 1.5}, r"--random-erase must be a probability in \[0, 1\] \(0: off\), got 1.5"),
    ({"random_erase": 0.5, "augment": "paper"}, "--random-erase works with --augment pad-crop"),
])
def test_bad_augmentation_and_clipping_options_get_one_line(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options).validate()


def test_validation_evaluate_and_prediction_score_the_weight_average(cifar_dir, tmp_path):
    """With --ema every evaluation scores the average: the run's test, --evaluate (which reproduces the
    run's own test line), and prediction."""
    from npalexnet.train.evaluate_only import evaluate_checkpoint
    lines = []
    fit(_config(cifar_dir, tmp_path / "run", ema=0.5, epochs=1), log=lines.append)
    ckpt = load_checkpoint(tmp_path / "run" / LAST)
    assert ckpt.ema and ckpt.meta["ema"]["decay"] == 0.5
    again = []
    evaluate_checkpoint(tmp_path / "run" / LAST, log=again.append)
    assert again[-1] == lines[-1] and again[-1].startswith("test accuracy: ")
    predictor = Predictor.from_checkpoint(tmp_path / "run" / LAST)
    for name, value in predictor.model.state_dict().items():
        numpy.testing.assert_array_equal(value, ckpt.ema[name], err_msg=name)
    assert any(not numpy.array_equal(ckpt.model[k], ckpt.ema[k]) for k in ckpt.model)


@pytest.mark.gpu
def test_a_run_on_the_gpu_is_the_same_run_as_on_the_cpu_and_its_checkpoint_reads_anywhere(cifar_dir, tmp_path):
    """One random scheme on both devices draws the same weights, order, crops, flips and dropout masks,
    so a run with ``--device cuda`` differs from the CPU run by float32 rounding alone; its checkpoint
    holds host arrays, so prediction and evaluation on the CPU read it as they read a CPU run's."""
    from npalexnet.train.evaluate_only import evaluate_checkpoint
    cpu_lines, gpu_lines = [], []
    cpu = fit(_config(cifar_dir, tmp_path / "cpu", ema=0.5), log=cpu_lines.append)
    gpu = fit(_config(cifar_dir, tmp_path / "cuda", ema=0.5, device="cuda"), log=gpu_lines.append)
    assert any("Conv2d" in line for line in gpu_lines)           # the model summary, probed on the GPU
    for a, b in zip(read_metrics_csv(tmp_path / "cpu" / "metrics.csv"),
                    read_metrics_csv(tmp_path / "cuda" / "metrics.csv"), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4), (a, b)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4), (a, b)
    assert gpu.test_accuracy == pytest.approx(cpu.test_accuracy, abs=0.1)
    cpu_ckpt, gpu_ckpt = load_checkpoint(tmp_path / "cpu" / LAST), load_checkpoint(tmp_path / "cuda" / LAST)
    for name, value in cpu_ckpt.model.items():
        assert isinstance(gpu_ckpt.model[name], numpy.ndarray), name
        scale = float(numpy.abs(value).max()) or 1.0
        numpy.testing.assert_allclose(gpu_ckpt.model[name], value, rtol=0, atol=1e-4 * scale, err_msg=name)
    images = numpy.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=numpy.uint8)
    on_gpu = Predictor.from_checkpoint(tmp_path / "cuda" / LAST, device="cuda").probabilities(images)
    on_cpu = Predictor.from_checkpoint(tmp_path / "cuda" / LAST, device="cpu").probabilities(images)
    assert isinstance(on_gpu, numpy.ndarray)
    numpy.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=1e-5)
    again = []
    evaluate_checkpoint(tmp_path / "cuda" / LAST, log=again.append)
    assert again[-1].startswith("test accuracy: ")


@pytest.mark.parametrize("val_fraction, column, what", [(0.2, "val_acc", "validation"), (0.0, "train_acc", "training")])
def test_best_checkpoint_is_the_epoch_of_the_best_validation_else_training_accuracy(cifar_dir, tmp_path, val_fraction,
                                                                                    column, what):
    """best.npz and the closing line follow the validation accuracy, or the training accuracy without a split
    (the default run holds out none); the earliest epoch wins a tie."""
    lines = []
    fit(_config(cifar_dir, tmp_path, epochs=3, val_fraction=val_fraction, lr=0.02), log=lines.append)
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    scores = [float(row[column]) for row in rows]
    best_epoch = scores.index(max(scores)) + 1
    if column == "val_acc":   # the data must tell the two rules apart, or the test proves nothing
        train = [float(row["train_acc"]) for row in rows]
        assert train.index(max(train)) + 1 != best_epoch
    assert load_checkpoint(tmp_path / BEST).meta["epoch"] == best_epoch
    assert f"best {what} accuracy {100 * max(scores):.2f}% at epoch {best_epoch}: {tmp_path / BEST}" in map(str, lines)
