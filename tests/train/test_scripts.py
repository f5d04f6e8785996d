"""The example scripts as a user runs them: train -> checkpoint -> resume -> predict, and their errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakedata import cifar_archive, write_cifar_batches, write_imagefolder
from tests.fileserver import FileServer, closed_port_url

ROOT = Path(__file__).resolve().parents[2]
TRAIN, PREDICT = ROOT / "examples" / "train_cifar10.py", ROOT / "examples" / "predict.py"
TINY = ["--width", "0.125", "--batch-size", "16", "--no-progress", "--device", "cpu", "--val-fraction", "0.2"]


def _run(script, *args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NPALEXNET_CACHE": str(Path(cwd or ROOT) / ".cache")}
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, check=False,
                          cwd=cwd, env=env, timeout=300)


def _one_line_error(proc):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.slow
def test_train_resume_predict_on_pickled_batches(tmp_path):
    write_cifar_batches(tmp_path / "data", per_batch=12, test=10)
    out = tmp_path / "run"
    first = _run(TRAIN, "--data-dir", tmp_path / "data", "--out", out, "--epochs", "1", *TINY, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(r"test accuracy: \d{1,3}\.\d\d%", first.stdout.strip().splitlines()[-1])
    assert re.search(r"epoch 1/1: train loss [\d.]+ acc [\d.]+% \| val loss [\d.]+ acc [\d.]+% \| lr", first.stdout)

    again = _run(TRAIN, "--data-dir", tmp_path / "data", "--out", out, "--epochs", "1", *TINY, cwd=tmp_path)
    assert "--resume" in _one_line_error(again)

    resumed = _run(TRAIN, "--data-dir", tmp_path / "data", "--out", out, "--epochs", "2", "--resume", *TINY,
                   cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "epoch 2/2:" in resumed.stdout
    assert (out / "metrics.csv").read_text().count("\n") == 3   # header + 2 epochs

    image = write_imagefolder(tmp_path / "images", per_class=1, classes=("x",)) / "train" / "x" / "0000.png"
    pred = _run(PREDICT, "--checkpoint", out / "best.npz", image, image)
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.splitlines()
    assert lines[0] == str(image) and len(lines) == 12
    assert all(re.fullmatch(r"\s+\d+\.\d\d%  \w+", line) for line in lines[1:6])


@pytest.mark.slow
def test_imagefolder_training_through_the_script(tmp_path):
    write_imagefolder(tmp_path / "folder", per_class=3)
    proc = _run(TRAIN, "--data-dir", tmp_path / "folder", "--out", tmp_path / "run", "--epochs", "1",
                "--schedule", "step", "--step-epochs", "1", "--padding", "zero", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "10 train, 2 validation, 12 test images" in proc.stdout and "test accuracy: " in proc.stdout


def test_user_errors_are_one_line(tmp_path):
    assert "no such directory" in _one_line_error(_run(TRAIN, "--data-dir", tmp_path / "nowhere", cwd=tmp_path))
    assert "no checkpoint at" in _one_line_error(_run(PREDICT, "--checkpoint", tmp_path / "x.npz", "a.png"))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    assert "corrupt or truncated" in _one_line_error(_run(PREDICT, "--checkpoint", tmp_path / "bad.npz", "a.png"))
    bad_lr = _run(TRAIN, "--lr", "-1", cwd=tmp_path)
    assert bad_lr.returncode == 2 and "--lr must be > 0" in bad_lr.stderr and "Traceback" not in bad_lr.stderr


def test_failed_download_is_one_line_and_leaves_nothing(tmp_path):
    url = closed_port_url()
    line = _one_line_error(_run(TRAIN, "--root", tmp_path / "data", "--download-url", url, *TINY, cwd=tmp_path))
    assert f"download of {url}cifar-10-python.tar.gz failed" in line and "refused" in line
    assert "--download-url" in line and "nothing was kept" in line
    assert list((tmp_path / "data").iterdir()) == []


def test_ctrl_c_during_a_download_leaves_no_partial_file(tmp_path):
    """A real SIGINT while the archive is arriving: exit 130, the partial file removed."""
    import signal
    import time

    archive = cifar_archive(per_batch=2, test=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with FileServer({"cifar-10-python.tar.gz": archive}) as server:
        server.stall["cifar-10-python.tar.gz"] = 1000
        proc = subprocess.Popen([sys.executable, str(TRAIN), "--root", str(tmp_path / "data"), "--download-url",
                                 server.url, *TINY], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert server.stalled.wait(timeout=120), proc.communicate()
        time.sleep(0.5)   # the first bytes are on their way to the partial file
        assert proc.poll() is None and list((tmp_path / "data").glob(".cifar-10-python.tar.gz.*.tmp"))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert "download of cifar-10-python.tar.gz interrupted: the partial file was removed" in out
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.slow
def test_unreadable_image_is_one_line(tmp_path):
    write_cifar_batches(tmp_path / "data", per_batch=4, test=4)
    proc = _run(TRAIN, "--data-dir", tmp_path / "data", "--out", tmp_path / "run", "--epochs", "1", *TINY,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "notes.jpg").write_text("not an image")
    line = _one_line_error(_run(PREDICT, "--checkpoint", tmp_path / "run" / "last.npz", tmp_path / "notes.jpg"))
    assert "notes.jpg" in line
    assert "no such file" in _one_line_error(_run(PREDICT, "--checkpoint", tmp_path / "run" / "last.npz",
                                                  tmp_path / "missing.png"))


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    """A real SIGINT in the middle of a long run: exit 130, a loadable checkpoint, --resume finishes."""
    import signal

    from npalexnet.train import load_checkpoint

    write_cifar_batches(tmp_path / "data", per_batch=12, test=10)
    args = ["--data-dir", tmp_path / "data", "--out", tmp_path / "run", *TINY]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(TRAIN), *map(str, args), "--epochs", "10000"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:   # wait until training has begun
            if line.startswith("epoch 2/"):
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    meta = load_checkpoint(tmp_path / "run" / "last.npz").meta
    done = meta["epoch"] + (1 if meta["partial"]["steps"] else 0)
    resumed = _run(TRAIN, *args, "--epochs", done + 1, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1].startswith("test accuracy: ")
