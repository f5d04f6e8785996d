"""The safetensors exporter: torch's names, loadable into torchvision's AlexNet and into a torch twin."""

from __future__ import annotations

import numpy
import pytest

import npalexnet
from npalexnet.export import export_metadata, export_safetensors, read_metadata
from npalexnet.gradcheck.torch_twin import to_torch
from npalexnet.models import INPUT_SIZE, alexnet
from tests.export.common import TOLERANCE, relative_error
from tests.export.common import images as _images
from tests.export.common import logits as _logits
from tests.export.common import randomise_batchnorm as _randomise_batchnorm

safe_open = pytest.importorskip("safetensors").safe_open
load_file = pytest.importorskip("safetensors.torch").load_file
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _torch_logits(module, images):
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(images)).numpy()


@pytest.mark.slow
def test_torchvision_variant_loads_into_torchvision_alexnet(tmp_path):
    model = alexnet("torchvision", num_classes=7)
    metadata = export_metadata({"variant": "torchvision", "num_classes": 7}, classes=list("abcdefg"))
    path = export_safetensors(model, tmp_path / "alexnet.safetensors", metadata)
    tv = torchvision.models.alexnet(num_classes=7)
    tv.load_state_dict(load_file(str(path)))   # strict: every key present, every shape right
    images = _images((3, 224, 224), n=2)
    assert relative_error(_torch_logits(tv, images), _logits(model, images)) < TOLERANCE


@pytest.mark.parametrize("variant, kwargs", [("paper", {}), ("paper", {"groups": 1, "lrn": False}), ("cifar", {}),
                                             ("cifar", {"lrn": True}), ("bn", {})])
def test_other_variants_load_into_a_torch_module_of_the_same_layers(variant, kwargs, tmp_path):
    model = _randomise_batchnorm(alexnet(variant, num_classes=6, width=0.25, **kwargs))
    path = export_safetensors(model, tmp_path / "w.safetensors")
    npalexnet.manual_seed(123)   # a twin of the same architecture with other weights, until the file is loaded
    twin = to_torch(alexnet(variant, num_classes=6, width=0.25, **kwargs), replay_dropout=False)
    images = _images((3, INPUT_SIZE[variant], INPUT_SIZE[variant]), n=2)
    assert relative_error(_torch_logits(twin, images), _logits(model, images)) > 1e-3
    twin.load_state_dict(load_file(str(path)))
    assert relative_error(_torch_logits(twin, images), _logits(model, images)) < TOLERANCE


def test_names_dtypes_and_metadata_in_the_header(tmp_path):
    model = _randomise_batchnorm(alexnet("bn", num_classes=3, width=0.125))
    metadata = export_metadata({"variant": "bn", "num_classes": 3, "width": 0.125}, classes=["x", "y", "z"],
                               mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0), input_size=227)
    path = export_safetensors(model, tmp_path / "w.safetensors", metadata)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]   # no temporary file left behind
    with safe_open(str(path), framework="numpy") as f:
        names, header = set(f.keys()), read_metadata(f.metadata())
        tracked = f.get_tensor("layer1.1.num_batches_tracked")
        running_var = f.get_tensor("layer1.1.running_var")
    assert names == set(model.state_dict())
    assert tracked.dtype == numpy.int64 and tracked.shape == () and running_var.dtype == numpy.float32
    numpy.testing.assert_array_equal(running_var, model.layer1[1].running_var)
    assert header["classes"] == ["x", "y", "z"] and header["model_kwargs"]["width"] == 0.125
    assert header["mean"] == [0.1, 0.2, 0.3] and header["npalexnet_version"] == npalexnet.__version__


def test_an_interrupted_export_leaves_the_old_file(tmp_path, monkeypatch):
    model = alexnet("cifar", width=0.125)
    path = export_safetensors(model, tmp_path / "w.safetensors")
    before = path.read_bytes()

    def broken_state_dict():
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "state_dict", broken_state_dict)
    with pytest.raises(KeyboardInterrupt):
        export_safetensors(model, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_an_unwritable_destination_leaves_nothing(tmp_path, monkeypatch):
    from npalexnet.data import atomic

    model = alexnet("cifar", width=0.125)

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        export_safetensors(model, tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_weights_round_trip_exactly(tmp_path):
    model = alexnet("paper", num_classes=4, width=0.125)
    path = export_safetensors(model.astype(numpy.float32), tmp_path / "w.safetensors")
    with safe_open(str(path), framework="numpy") as f:
        for name, value in model.state_dict().items():
            numpy.testing.assert_array_equal(f.get_tensor(name), value, err_msg=name)
        assert f.metadata() is None or f.metadata() == {}   # no metadata given, none written
