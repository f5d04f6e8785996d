"""load_pretrained: torch, safetensors and npalexnet weights into a model, the classifier replaced when needed."""

from __future__ import annotations

import sys

import numpy
import pytest

import npalexnet
from npalexnet.models import PretrainedError, alexnet, load_pretrained, read_state_dict
from tests.fakedata import write_torchvision_alexnet

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A randomly initialised torchvision AlexNet (1000 classes), saved with torch.save; and its state."""
    return write_torchvision_alexnet(tmp_path_factory.mktemp("weights"))


def _assert_loaded(model, state, skip=()):
    for name, value in model.state_dict().items():
        if name not in skip:
            numpy.testing.assert_array_equal(value, state[name], err_msg=name)


def test_torchvision_weights_into_the_torchvision_variant_with_5_classes(torchvision_file):
    path, state = torchvision_file
    model = alexnet("torchvision", num_classes=5)
    report = load_pretrained(model, path)
    assert report.reinitialised == "classifier.6" and report.classes == (1000, 5)
    assert str(report) == (f"init-from {path}: loaded 14 tensors; classifier.6 re-initialised for 5 classes "
                           "(the file has 1000)")
    _assert_loaded(model, state, skip=("classifier.6.weight", "classifier.6.bias"))
    head = model.classifier[6]
    assert head.weight.shape == (5, 4096) and head.weight.dtype == numpy.float32
    bound = 1 / numpy.sqrt(4096)   # torch's default initialisation of a fresh Linear(4096, 5)
    assert 0.9 * bound < numpy.abs(head.weight.data).max() <= bound and numpy.abs(head.bias.data).max() <= bound
    assert not numpy.allclose(head.weight.data, state["classifier.6.weight"][:5])


def test_same_class_count_loads_everything_and_gives_torchvisions_logits(torchvision_file):
    path, state = torchvision_file
    model = alexnet("torchvision")
    report = load_pretrained(model, path)
    assert report.reinitialised is None and len(report.loaded) == 16
    _assert_loaded(model, state)
    tv = torchvision.models.alexnet()
    tv.load_state_dict(torch.load(path, weights_only=True))
    x = numpy.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(numpy.float32)
    with torch.no_grad():
        expected = tv.eval()(torch.from_numpy(x)).numpy()
    with npalexnet.no_grad():
        numpy.testing.assert_allclose(model.eval()(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_wrapped_torch_files(wrap, tmp_path):
    state = alexnet("cifar", width=0.125).state_dict()
    tensors = {k: torch.from_numpy(numpy.array(v)) for k, v in state.items()}
    obj = ({f"module.{k}": v for k, v in tensors.items()} if wrap == "module."
           else {wrap: tensors, "epoch": 3, "optimizer": {"lr": 0.1}})
    torch.save(obj, tmp_path / "w.pt")
    model = alexnet("cifar", width=0.125)
    load_pretrained(model, tmp_path / "w.pt")
    _assert_loaded(model, state)


def test_safetensors_npz_checkpoint_and_a_mapping(tmp_path):
    pytest.importorskip("safetensors")
    from npalexnet.export import export_safetensors
    from npalexnet.train.checkpoint import save_checkpoint

    source = alexnet("bn", num_classes=10, width=0.125)
    source.layer2[1].running_var = source.layer2[1].running_var * 3
    state = {k: numpy.array(v) for k, v in source.state_dict().items()}
    export_safetensors(source, tmp_path / "w.safetensors")
    save_checkpoint(tmp_path / "last.npz", source, meta={"epoch": 1})
    numpy.savez(tmp_path / "plain.npz", **state)
    for given in (tmp_path / "w.safetensors", tmp_path / "last.npz", tmp_path / "plain.npz", state):
        model = alexnet("bn", num_classes=4, width=0.125)
        report = load_pretrained(model, given)
        assert report.reinitialised == "fc2.0" and report.classes == (10, 4)
        _assert_loaded(model, state, skip=("fc2.0.weight", "fc2.0.bias"))
    assert set(read_state_dict(tmp_path / "last.npz")) == set(state)


def test_a_shape_mismatch_names_the_key_and_both_shapes_and_loads_nothing(torchvision_file):
    path, _ = torchvision_file
    model = alexnet("torchvision", num_classes=5, in_channels=1)
    before = {k: numpy.array(v) for k, v in model.state_dict().items()}
    with pytest.raises(PretrainedError) as info:
        load_pretrained(model, path)
    assert str(info.value) == (f"{path}: features.0.weight has shape (64, 3, 11, 11) in the file but "
                               "(64, 1, 11, 11) in the model")
    _assert_loaded(model, before)


def test_other_mismatches(torchvision_file, tmp_path):
    path, _ = torchvision_file
    with pytest.raises(PretrainedError, match=r"does not fit this bn model: missing keys layer1\.0\.weight"):
        load_pretrained(alexnet("bn", num_classes=5), path)
    with pytest.raises(PretrainedError, match=r"classifier\.6\.weight has shape \(1000, 4096\) in the file but "
                                              r"\(5, 4096\) in the model \(the number of classes"):
        load_pretrained(alexnet("torchvision", num_classes=5), path, replace_classifier=False)
    with pytest.raises(PretrainedError, match=r"features\.0\.weight has shape \(64, 3, 11, 11\) in the file but "
                                              r"\(32, 3, 11, 11\) in the model \(14 more tensors differ in shape\)$"):
        load_pretrained(alexnet("torchvision", width=0.5), path)


def test_unreadable_files(tmp_path):
    with pytest.raises(PretrainedError, match="no weights file at"):
        load_pretrained(alexnet("cifar", width=0.125), tmp_path / "missing.pth")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(PretrainedError, match=r"unknown weights format '\.h5': expected \.pth, \.pt, "):
        load_pretrained(alexnet("cifar", width=0.125), tmp_path / "w.h5")
    for name in ("w.pth", "w.npz", "w.safetensors"):
        (tmp_path / name).write_bytes(b"garbage, not weights")
        with pytest.raises(PretrainedError, match="is not a readable"):
            load_pretrained(alexnet("cifar", width=0.125), tmp_path / name)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(PretrainedError, match="holds a list, not a state_dict of tensors"):
        load_pretrained(alexnet("cifar", width=0.125), tmp_path / "list.pth")


def test_torch_file_without_torch_is_one_clear_line(torchvision_file, monkeypatch):
    path, _ = torchvision_file
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch now raises ImportError
    with pytest.raises(PretrainedError) as info:
        load_pretrained(alexnet("torchvision", num_classes=5), path)
    assert str(info.value) == (f"{path} is a torch file: reading it needs torch (pip install torch), or convert "
                               "it to .safetensors")
