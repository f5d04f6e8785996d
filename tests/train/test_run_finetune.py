"""Fine-tuning through ``fit``: --init-from torchvision weights, --freeze features, on a generated ImageFolder."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.models import FreezeError, PretrainedError, alexnet, freeze
from npalexnet.train import TrainConfig, build_optimizer, fit, load_checkpoint
from tests.fakedata import CLASSES, write_cifar_batches, write_imagefolder, write_torchvision_alexnet
from tests.train.test_scripts import TINY, TRAIN, _one_line_error, _run

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    """Five classes, 4 training and 2 test images each (32x32; the torchvision net sees them at 224)."""
    root = tmp_path_factory.mktemp("flowers")
    write_imagefolder(root / "train-part", per_class=4, classes=CLASSES[:5])
    write_imagefolder(root / "test-part", per_class=2, classes=CLASSES[:5], seed=5)
    (root / "train-part" / "train").rename(root / "train")
    (root / "test-part" / "test").rename(root / "test")
    return root


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """A torch state_dict of a randomly initialised torchvision AlexNet (1000 classes), saved with torch.save."""
    return write_torchvision_alexnet(tmp_path_factory.mktemp("weights"))


def _config(data_dir, out, **kwargs) -> TrainConfig:
    base = {"dataset": "imagefolder", "data_dir": str(data_dir), "out": str(out), "variant": "torchvision",
            "epochs": 1, "batch_size": 10, "eval_batch_size": 10, "val_fraction": 0.0, "tta": False,
            "tta_crops": 0, "lr": 0.01, "device": "cpu", "progress": False, "workers": 1}
    return TrainConfig(**{**base, **kwargs})


@pytest.mark.slow
def test_fine_tuning_trains_the_classifier_only(flowers, imagenet_like, tmp_path):
    path, state = imagenet_like
    lines = []
    result = fit(_config(flowers, tmp_path / "run", init_from=str(path), freeze="features"), log=lines.append)
    text = "\n".join(map(str, lines))
    assert f"init-from {path}: loaded 14 tensors; classifier.6 re-initialised for 5 classes (the file has 1000)" in text
    assert "frozen: features (2,469,696 parameters); training classifier (54,554,629 parameters)" in text
    weights = load_checkpoint(tmp_path / "run" / "last.npz").model
    for name in state:
        if name.startswith("features."):   # frozen: bit for bit the file's
            numpy.testing.assert_array_equal(weights[name], state[name], err_msg=name)
            numpy.testing.assert_array_equal(result.model.state_dict()[name], state[name], err_msg=name)
    for name in ("classifier.1.weight", "classifier.1.bias", "classifier.4.weight"):
        assert not numpy.array_equal(weights[name], state[name]), f"{name} did not train"
    assert weights["classifier.6.weight"].shape == (5, 4096)
    assert load_checkpoint(tmp_path / "run" / "last.npz").meta["config"]["freeze"] == "features"


def test_the_optimizer_gets_the_trainable_parameters_only():
    model = alexnet("cifar", width=0.125)
    freeze(model, "features")
    optimizer = build_optimizer(TrainConfig(), model)
    given = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert given == {id(p) for p in model.classifier.parameters()}


def test_bad_init_from_and_freeze_stop_the_run(flowers, tmp_path):
    tiny = {"variant": "cifar", "width": 0.125}
    with pytest.raises(PretrainedError, match="no weights file at"):
        fit(_config(flowers, tmp_path / "a", init_from=str(tmp_path / "missing.pth"), **tiny), log=lambda *a: None)
    with pytest.raises(FreezeError, match="--freeze classifier: only leading stages"):
        fit(_config(flowers, tmp_path / "b", freeze="classifier", **tiny), log=lambda *a: None)
    assert not (tmp_path / "a" / "last.npz").exists() and not (tmp_path / "b" / "last.npz").exists()


def test_the_script_reports_bad_weights_and_freeze_in_one_line(tmp_path):
    write_cifar_batches(tmp_path / "data", per_batch=4, test=4)
    (tmp_path / "w.pth").write_bytes(b"not a torch file")
    common = ["--data-dir", tmp_path / "data", "--epochs", "1", *TINY]
    line = _one_line_error(_run(TRAIN, *common, "--out", tmp_path / "a", "--init-from", tmp_path / "w.pth",
                                cwd=tmp_path))
    assert f"{tmp_path / 'w.pth'} is not a readable torch state_dict" in line
    line = _one_line_error(_run(TRAIN, *common, "--out", tmp_path / "b", "--freeze", "fc", cwd=tmp_path))
    assert line.startswith("error: --freeze fc: no such part of the cifar model; its stages are features, ")
