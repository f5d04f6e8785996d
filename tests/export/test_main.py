"""``python -m npalexnet.export CHECKPOINT OUT``: both formats from a training checkpoint, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from npalexnet.export import ExportError, export_checkpoint, format_for
from npalexnet.export.__main__ import main
from npalexnet.train.checkpoint import save_checkpoint
from npalexnet.train.config import TrainConfig, build_model, model_kwargs
from tests.export.common import images as _images

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
safe_open = pytest.importorskip("safetensors").safe_open

from tests.export.test_onnx import _assert_same_logits  # noqa: E402 (after the skips: it needs onnx)

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "ship"]


@pytest.fixture
def checkpoint(tmp_path):
    kwargs = model_kwargs(TrainConfig(width=0.125, lrn=True), len(CLASSES), 3)
    model = build_model(kwargs)
    meta = {"epoch": 1, "model_kwargs": kwargs, "variant": "cifar", "classes": CLASSES, "mean": [0.5, 0.4, 0.3],
            "std": [0.25, 0.25, 0.25], "image_size": 32, "input_size": 32, "in_channels": 3,
            "resize_mode": "bilinear"}
    return save_checkpoint(tmp_path / "best.npz", model, meta=meta), model


def test_onnx_from_a_checkpoint(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    assert main([str(path), str(tmp_path / "alexnet.onnx"), "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'alexnet.onnx'}") and "AlexNet cifar, 3 classes" in out
    difference = float(out.split("largest logit difference ")[1])
    assert difference < 1e-5
    _assert_same_logits(tmp_path / "alexnet.onnx", model, _images((3, 32, 32)))

    props = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "alexnet.onnx")).metadata_props}
    assert props["classes"] == CLASSES and props["std"] == [0.25] * 3 and props["model_kwargs"]["lrn"] is True
    assert props["image_size"] == 32 and props["resize_mode"] == "bilinear"


def test_safetensors_from_a_checkpoint_and_format_by_flag(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    assert main([str(path), str(tmp_path / "weights.bin"), "--format", "safetensors"]) == 0
    with safe_open(str(tmp_path / "weights.bin"), framework="numpy") as f:
        assert f.metadata()["classes"] == json.dumps(CLASSES)
        numpy.testing.assert_array_equal(f.get_tensor("classifier.6.weight"), model.classifier[6].weight.data)


def test_format_rules():
    assert format_for("a/b.ONNX") == "onnx" and format_for("w.safetensors") == "safetensors"
    assert format_for("w.bin", "onnx") == "onnx"
    with pytest.raises(ExportError, match=r"cannot tell the format of w\.bin.*--format onnx\|safetensors"):
        format_for("w.bin")
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        format_for("w.onnx", "tflite")


def test_export_checkpoint_returns_the_model(checkpoint, tmp_path):
    path, model = checkpoint
    exported, out, metadata = export_checkpoint(path, tmp_path / "m.onnx")
    assert not exported.training and json.loads(metadata["input_size"]) == 32
    for name, value in model.state_dict().items():   # the checkpoint's weights
        numpy.testing.assert_array_equal(exported.state_dict()[name], value, err_msg=name)
    _assert_same_logits(out, model, _images((3, 32, 32)))


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "npalexnet.export", *map(str, args)], capture_output=True,
                          text=True, check=False, env=env, timeout=120)


@pytest.mark.parametrize("case", ["missing checkpoint", "unknown suffix", "not a checkpoint"])
def test_errors_are_one_line(case, checkpoint, tmp_path):
    path, _ = checkpoint
    if case == "missing checkpoint":
        args, expected = (tmp_path / "nope.npz", tmp_path / "m.onnx"), "no checkpoint at"
    elif case == "unknown suffix":
        args, expected = (path, tmp_path / "m.tflite"), "cannot tell the format"
    else:
        (tmp_path / "junk.npz").write_bytes(b"not a zip")
        args, expected = (tmp_path / "junk.npz", tmp_path / "m.onnx"), "not a readable checkpoint"
    proc = _run(*args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.tflite").exists()


def test_missing_onnx_package_is_one_line(checkpoint, tmp_path, monkeypatch, capsys):
    path, _ = checkpoint
    monkeypatch.setitem(sys.modules, "onnx", None)   # import onnx now raises ImportError
    assert main([str(path), str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == 'error: ONNX export needs the onnx package: pip install "npalexnet[export]"'
