"""benchmarks/make_gpu_data.py and benchmarks/check_export.py, end to end on small generated data."""

from __future__ import annotations

import re

import numpy
import pytest

from npalexnet.data import load_dataset
from npalexnet.train.cli import parse_args
from npalexnet.train.run import fit
from tests.benchmarks.scripts import load
from tests.fakedata import write_cifar_batches


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_batches(root, per_batch=12, test=20)
    return root


def test_make_gpu_data_writes_a_stratified_subset_that_reads_back(cifar_dir, tmp_path, capsys):
    make_gpu_data = load("make_gpu_data")
    out = tmp_path / "small"
    assert make_gpu_data.main(["--data-dir", str(cifar_dir), "--out", str(out), "--train", "20", "--test", "10"]) == 0
    assert "wrote 20 training and 10 test images" in capsys.readouterr().out
    small = load_dataset("cifar10", str(out), download=False)
    full = load_dataset("cifar10", str(cifar_dir), download=False)
    assert (len(small.train), len(small.test)) == (20, 10)
    # every image of the subset is one of the full split's, with its own label
    rows = {img.tobytes(): label for img, label in zip(full.train.images, full.train.labels)}
    assert all(rows[img.tobytes()] == label for img, label in zip(small.train.images, small.train.labels))
    # stratified: each class within an image of its share of the full split (these classes are unequal)
    share = 20 * numpy.bincount(full.train.labels, minlength=10) / len(full.train)
    assert numpy.abs(numpy.bincount(small.train.labels, minlength=10) - share).max() < 1


def test_make_gpu_data_asking_for_more_than_there_is_is_one_line(cifar_dir, tmp_path, capsys):
    make_gpu_data = load("make_gpu_data")
    out = tmp_path / "small"
    assert make_gpu_data.main(["--data-dir", str(cifar_dir), "--out", str(out), "--train", "1000"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: asked for 1000 training") and "\n" not in err
    assert not out.exists()   # nothing half-written


def test_check_export_runs_a_checkpoint_in_onnxruntime_and_torch(cifar_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    run = tmp_path / "run"
    cfg, given, _ = parse_args(["--data-dir", str(cifar_dir), "--out", str(run), "--epochs", "1", "--width",
                                "0.125", "--batch-size", "16", "--device", "cpu", "--no-progress"])
    fit(cfg, log=lambda *a: None, command=["test"], given=given)
    check_export = load("check_export")
    assert check_export.main([str(run / "last.npz"), "--data-dir", str(cifar_dir), "--images", "10",
                              "--out", str(tmp_path / "files")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "files" / "model.onnx").is_file() and (tmp_path / "files" / "model.safetensors").is_file()
    for runtime in ("onnxruntime", "torch"):
        line = next(l for l in out.splitlines() if l.startswith(runtime))
        diff = float(re.search(r"max \|logit diff\| (\S+)", line).group(1))
        assert diff < 1e-4, line
        assert "top-1 agreement 100.0%" in line, line
