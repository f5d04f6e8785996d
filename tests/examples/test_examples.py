"""The study examples, run in-process on tiny nets: exit codes, output, pictures."""

import importlib.util
import json
import os

import numpy
import pytest
from PIL import Image

import npalexnet
from npalexnet import nn

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_with_pytorch_tiny(tmp_path, capsys):
    out = tmp_path / "curves.png"
    rc = load("compare_with_pytorch").main(["--steps", "4", "--width", "0.0625", "--images", "32",
                                            "--batch-size", "8", "--data-dir", str(tmp_path / "none"),
                                            "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "lie on top of each other" in text and "random Gaussian" in text
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (800, 600)


def break_gradients(monkeypatch, factor):
    """Scale every parameter gradient by ``factor``: every layer and every fast path delivers its
    parameter gradients through ``Parameter.accumulate_grad``."""
    add = nn.Parameter.accumulate_grad
    monkeypatch.setattr(nn.Parameter, "accumulate_grad", lambda self, g: add(self, g * factor))


def test_compare_with_pytorch_float32_and_a_broken_gradient_is_seen(tmp_path, monkeypatch, capsys):
    example = load("compare_with_pytorch")
    common = ["--steps", "3", "--width", "0.0625", "--images", "16", "--batch-size", "8", "--data-dir",
              str(tmp_path / "none"), "--out", str(tmp_path / "c.png")]
    assert example.main(common + ["--dtype", "float32"]) == 0
    assert "first batch against PyTorch autograd (float32 table: outputs 1e-05, gradients 5e-05)" in \
        capsys.readouterr().out
    break_gradients(monkeypatch, 1.5)
    assert example.main(common) == 1
    assert "FAILED" in capsys.readouterr().out


def test_compare_with_pytorch_holds_the_first_step_to_the_table(tmp_path, monkeypatch, capsys):
    """A 0.1% error in float32 leaves three steps' loss curves within --tolerance (1e-3); the first-step
    check against the tolerance table still sees it."""
    example = load("compare_with_pytorch")
    args = ["--steps", "3", "--width", "0.0625", "--images", "16", "--batch-size", "8", "--data-dir",
            str(tmp_path / "none"), "--out", str(tmp_path / "c.png"), "--dtype", "float32"]
    break_gradients(monkeypatch, 1.001)
    assert example.main(args) == 1
    text = capsys.readouterr().out
    assert "FAILED: the first step's gradients disagree" in text and "features.0.weight" in text
    assert "curves separate" not in text


@pytest.mark.parametrize("name", ["compare_with_pytorch", "inspect_backprop"])
def test_unreadable_data_is_one_line_and_exit_status_two(name, tmp_path, capsys):
    from tests.fakedata import write_cifar_batches

    (write_cifar_batches(tmp_path) / "test_batch").write_bytes(b"truncated")
    with pytest.raises(SystemExit) as stop:
        load(name).main(["--data-dir", str(tmp_path), "--width", "0.0625"])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "test_batch" in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "NOTE" not in captured.out


def test_inspect_backprop_tiny_random_batch(tmp_path, capsys):
    rc = load("inspect_backprop").main(["--data-dir", str(tmp_path / "none"), "--width", "0.0625",
                                        "--batch-size", "2", "--lrn", "--directions", "1"])
    text = capsys.readouterr().out
    assert rc == 0, text
    for part in ("NOTE: no CIFAR-10 data", "Forward and backward, layer by layer", "Against PyTorch autograd",
                 "Against finite differences", "features.2    LocalResponseNorm", "All checks passed"):
        assert part in text


def test_inspect_backprop_catches_a_wrong_gradient(tmp_path, monkeypatch, capsys):
    break_gradients(monkeypatch, 1.01)
    rc = load("inspect_backprop").main(["--data-dir", str(tmp_path / "none"), "--width", "0.0625",
                                        "--batch-size", "2", "--directions", "1"])
    text = capsys.readouterr().out
    assert rc == 1 and "FAILED" in text and "torch: features.0 dL/dW" in text
    assert "finite differences: features.0 dL/dweight" in text


def test_inspect_backprop_uses_the_one_tolerance_table(tmp_path, monkeypatch, capsys):
    from npalexnet.gradcheck.torch_compare import TOLERANCES

    monkeypatch.setitem(TOLERANCES, numpy.float32, (1e-12, 1e-12))      # tighter than float32 can meet
    rc = load("inspect_backprop").main(["--data-dir", str(tmp_path / "none"), "--width", "0.0625",
                                        "--batch-size", "2", "--directions", "1"])
    text = capsys.readouterr().out
    assert rc == 1 and "error <= 1e-12 for outputs" in text and "torch: features.0 output" in text
    assert "finite differences:" not in text


def test_inspect_backprop_reads_an_image_folder(tmp_path, capsys):
    """The layouts the training program reads, and its one-line error for one it refuses."""
    from tests.fakedata import write_imagefolder

    write_imagefolder(tmp_path / "tree", classes=("airplane", "cat"), per_class=2)
    args = ["--width", "0.0625", "--batch-size", "3", "--directions", "1", "--no-torch"]
    rc = load("inspect_backprop").main(["--data-dir", str(tmp_path / "tree")] + args)
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "batch: 3 images" in text and "NOTE" not in text and "npalexnet.data" in text
    assert "labels " in text and set(text.split("labels ")[1].split("\n")[0].split(", ")) <= {"airplane", "cat"}
    write_imagefolder(tmp_path / "train_only", classes=("airplane", "cat"), per_class=2)
    (tmp_path / "train_only" / "test").rename(tmp_path / "elsewhere")
    with pytest.raises(SystemExit) as stop:
        load("inspect_backprop").main(["--data-dir", str(tmp_path / "train_only")] + args)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "test/ has none" in captured.err and "NOTE" not in captured.out


def test_a_corrupt_image_is_skipped_and_named_and_no_readable_image_is_one_line(tmp_path, capsys):
    """The pipeline's decision (npalexnet/data/store.py): a file that does not decode is skipped with a warning
    naming it, which the study script prints; a split without one readable image ends it with one line."""
    from tests.fakedata import write_imagefolder

    tree = write_imagefolder(tmp_path / "tree", classes=("airplane", "cat"), per_class=3)
    broken = tree / "train" / "cat" / "broken.png"
    broken.write_bytes(b"\x89PNG not the rest of a PNG")
    args = ["--width", "0.0625", "--batch-size", "3", "--directions", "1", "--no-torch"]
    assert load("inspect_backprop").main(["--data-dir", str(tree)] + args) == 0
    text = capsys.readouterr().out
    assert f"warning: skipped 1 unreadable image of {tree / 'train'}: cat/broken.png (" in text
    assert "batch: 3 images" in text
    for image in (tree / "train").rglob("*.png"):
        image.write_bytes(b"not an image")
    with pytest.raises(SystemExit) as stop:
        load("inspect_backprop").main(["--data-dir", str(tree)] + args)
    captured = capsys.readouterr()
    assert stop.value.code == 2 and "Traceback" not in captured.err
    assert captured.err.startswith("error: none of the") and len(captured.err.strip().splitlines()) == 1


def test_visualize_a_checkpoint(tmp_path, capsys):
    pytest.importorskip("npalexnet.train.predict", reason="the training pipeline is not on this branch")
    from npalexnet.models import alexnet
    from npalexnet.train.checkpoint import save_checkpoint

    rng = numpy.random.default_rng(0)
    classes = ["cat", "dog"]
    for split in ("train", "test"):
        for c in classes:
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=numpy.uint8)).save(
                    tmp_path / "data" / split / c / f"{i}.png")
    kwargs = {"variant": "cifar", "num_classes": 2, "in_channels": 3, "width": 0.0625}
    npalexnet.manual_seed(0)
    model = alexnet(**kwargs)
    meta = {"model_kwargs": kwargs, "classes": classes, "mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 32,
            "input_size": 32, "in_channels": 3, "config": {"dataset": "cifar10",
                                                           "data_dir": str(tmp_path / "data")}}
    ckpt = save_checkpoint(tmp_path / "run" / "best.npz", model, meta=json.loads(json.dumps(meta)))
    rc = load("visualize").main(["--checkpoint", str(ckpt)])
    text = capsys.readouterr().out
    assert rc == 0 and "test accuracy" in text
    for name in ("conv1_filters.png", "confusion_matrix.png", "misclassified.png"):
        with Image.open(tmp_path / "run" / name) as im:
            im.load()
            assert im.format == "PNG" and min(im.size) > 10


def test_visualize_scores_as_the_run_tested(tmp_path, capsys):
    """Default protocol and batch size from the checkpoint: the accuracy is the run's own test accuracy."""
    from npalexnet.train import TrainConfig, fit
    from tests.fakedata import write_cifar_batches

    write_cifar_batches(tmp_path / "data", per_batch=12, test=10)
    cfg = TrainConfig(data_dir=str(tmp_path / "data"), out=str(tmp_path / "run"), width=0.125, batch_size=16,
                      eval_batch_size=4, device="cpu", progress=False, val_fraction=0.2, epochs=1)
    result = fit(cfg, log=lambda *a: None)
    assert load("visualize").main(["--checkpoint", str(tmp_path / "run" / "last.npz"), "--device", "cpu"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test accuracy"))
    assert line == (f"test accuracy: {100 * result.test_accuracy:.2f}% (on 10 images; weights last.npz, epoch 1; "
                    "10 views: 5 crops at +-2 px and their mirror images)")
    assert load("visualize").main(["--checkpoint", str(tmp_path / "run" / "last.npz"), "--no-tta",
                                   "--tta-crops", "0"]) == 0
    assert "weights last.npz, epoch 1; the image)" in capsys.readouterr().out
