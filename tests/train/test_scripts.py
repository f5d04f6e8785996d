"""The example scripts as a user runs them: train -> checkpoint -> resume -> predict, and their errors.

Also the README's commands one after another in a fresh folder, SIGINT and SIGTERM, and the faults of
issue 16 produced for real: a full tmpfs (root) and a file-size limit, an unwritable --out, a broken image.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakedata import cifar_archive, write_cifar_batches, write_imagefolder
from tests.faults import RLIMIT_PRELUDE, read_only_folder, small_filesystem, temporary_files
from tests.fileserver import FileServer, closed_port_url

ROOT = Path(__file__).resolve().parents[2]
TRAIN, PREDICT = ROOT / "examples" / "train_cifar10.py", ROOT / "examples" / "predict.py"
VISUALIZE = ROOT / "examples" / "visualize.py"
TEST_LINE = r"test accuracy: \d{1,3}\.\d\d% \(loss \d+\.\d{4} on \d+ images; weights last\.npz, epoch \d+; .*\)"
TINY = ["--width", "0.125", "--batch-size", "16", "--no-progress", "--device", "cpu", "--val-fraction", "0.2"]


def _run(script, *args, cwd=None, env=None, prelude=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NPALEXNET_CACHE": str(Path(cwd or ROOT) / ".cache"), **(env or {})}
    command = [sys.executable, *(["-c", prelude] if prelude else []), str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd, env=env, timeout=300)


def _ctrl_c_as_in_a_terminal():
    """In the child: SIGINT back to its default, which a shell's background job (nohup, &) sets to ignored,
    so that Python installs its KeyboardInterrupt handler as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
    assert re.fullmatch(TEST_LINE, first.stdout.strip().splitlines()[-1])
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
    assert re.fullmatch(rf"{re.escape(str(out / 'best.npz'))}: weights best\.npz, epoch [12]; 10 views: 5 crops at "
                        r"\+-2 px and their mirror images; device cpu", lines[0])   # the run's own protocol
    assert lines[1] == str(image) and len(lines) == 13
    assert all(re.fullmatch(r"\s+\d+\.\d\d%  \w+", line) for line in lines[2:7])


@pytest.mark.slow
def test_imagefolder_training_through_the_script(tmp_path):
    write_imagefolder(tmp_path / "folder", per_class=3)
    proc = _run(TRAIN, "--data-dir", tmp_path / "folder", "--out", tmp_path / "run", "--epochs", "1",
                "--schedule", "step", "--step-epochs", "1", "--padding", "zero", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "10 train, 2 validation, 12 test images" in proc.stdout and "test accuracy: " in proc.stdout


def test_user_errors_are_one_line(tmp_path):
    assert "no such directory" in _one_line_error(_run(TRAIN, "--data-dir", tmp_path / "nowhere", cwd=tmp_path))
    (tmp_path / "a.png").write_bytes(b"")
    assert "no checkpoint at" in _one_line_error(_run(PREDICT, "--checkpoint", tmp_path / "x.npz", tmp_path / "a.png"))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    assert "corrupt or truncated" in _one_line_error(_run(PREDICT, "--checkpoint", tmp_path / "bad.npz",
                                                          tmp_path / "a.png"))
    for script in (VISUALIZE, TRAIN):
        option = "--checkpoint" if script == VISUALIZE else "--evaluate"
        assert "corrupt or truncated" in _one_line_error(_run(script, option, tmp_path / "bad.npz", cwd=tmp_path))
        assert "no checkpoint at" in _one_line_error(_run(script, option, tmp_path / "x.npz", cwd=tmp_path))
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
                                stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
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
@pytest.mark.parametrize("signame, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_saves_a_checkpoint_that_resumes(tmp_path, signame, status):
    """A real SIGINT (Ctrl-C) or SIGTERM (a scheduler's pre-emption) in the middle of a long run: exit
    130 or 143, a loadable checkpoint, --resume finishes."""
    import signal

    from npalexnet.train import load_checkpoint

    write_cifar_batches(tmp_path / "data", per_batch=12, test=10)
    args = ["--data-dir", tmp_path / "data", "--out", tmp_path / "run", *TINY]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(TRAIN), *map(str, args), "--epochs", "10000"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        for line in proc.stdout:   # wait until training has begun
            if line.startswith("epoch 2/"):
                break
        proc.send_signal(getattr(signal, signame))
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    assert f"--resume {tmp_path / 'run'}" in stderr and "Traceback" not in stderr
    assert stderr.startswith(f"interrupted ({'Ctrl-C' if signame == 'SIGINT' else 'SIGTERM'}) ")
    meta = load_checkpoint(tmp_path / "run" / "last.npz").meta
    done = meta["epoch"] + (1 if meta["partial"]["steps"] else 0)
    resumed = _run(TRAIN, *args, "--epochs", done + 1, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "interrupt (" in log and log.count("run: ") == 2 and "resumed from" in log


def _lines(proc):
    return [line for line in proc.stdout.splitlines()]


@pytest.mark.slow
def test_the_readme_commands_one_after_another(tmp_path):
    """A fresh folder: the quick look, then the default run, then --resume last, predict, --evaluate."""
    write_cifar_batches(tmp_path / "cifar", per_batch=12, test=10)
    data = ["--data-dir", tmp_path / "cifar"]
    quick = _run(TRAIN, *data, "--subset", "20", "--epochs", "1", *TINY, cwd=tmp_path)
    default = _run(TRAIN, *data, "--epochs", "1", *TINY, cwd=tmp_path)
    for proc in (quick, default):
        assert proc.returncode == 0, proc.stderr
    first, second = (Path(tmp_path / _lines(p)[0].removeprefix("run: ")) for p in (quick, default))
    assert first.parent == second.parent == tmp_path / "runs" / "cifar10" and first != second
    assert "20 train" in quick.stdout and "48 train" in default.stdout

    failed = _run(TRAIN, "--data-dir", tmp_path / "nowhere", cwd=tmp_path)   # a run that fails at the start...
    assert "no such directory" in _one_line_error(failed)
    assert (tmp_path / "runs" / "cifar10" / "latest").resolve() == second.resolve()   # ...is never the latest
    changed = _run(TRAIN, *data, "--resume", "--epochs", "2", "--lr", "0.1", *TINY, cwd=tmp_path)
    assert "--lr (saved 0.05, given 0.1)" in _one_line_error(changed)
    resumed = _run(TRAIN, "--resume", "last", "--epochs", "2", cwd=tmp_path)   # the data, device... as saved
    assert resumed.returncode == 0, resumed.stderr
    assert _lines(resumed)[0] == f"run: {second.relative_to(tmp_path)}" and "epoch 2/2:" in resumed.stdout
    assert re.fullmatch(TEST_LINE, _lines(resumed)[-1]) and "epoch 2;" in _lines(resumed)[-1]

    image = write_imagefolder(tmp_path / "images", per_class=1, classes=("x",)) / "train" / "x" / "0000.png"
    pred = _run(PREDICT, "--checkpoint", "runs/cifar10/latest/best.npz", image, cwd=tmp_path)
    assert pred.returncode == 0 and _lines(pred)[1] == str(image), pred.stderr
    evaluated = _run(TRAIN, "--evaluate", "runs/cifar10/latest/last.npz", "--no-progress", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert _lines(evaluated)[-1] == _lines(resumed)[-1]   # the run's own test, reproduced exactly
    again = _run(TRAIN, "--config", second / "config.json", "--epochs", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "48 train" in again.stdout and "width 0.125" in again.stdout and _lines(again)[0] != _lines(default)[0]


@pytest.mark.slow
def test_predict_takes_folders_in_batches(tmp_path):
    write_cifar_batches(tmp_path / "data", per_batch=4, test=4)
    assert _run(TRAIN, "--data-dir", tmp_path / "data", "--out", tmp_path / "run", "--epochs", "1", "--no-tta",
                "--tta-crops", "0", *TINY, cwd=tmp_path).returncode == 0
    folder = write_imagefolder(tmp_path / "images", per_class=2, classes=("a", "b"), split=False)
    pred = _run(PREDICT, "--checkpoint", tmp_path / "run" / "last.npz", folder, "--batch-size", "3", "--top", "2")
    assert pred.returncode == 0, pred.stderr
    lines = _lines(pred)
    assert lines[0].endswith("weights last.npz, epoch 1; the image; device cpu")
    shown = [line for line in lines[1:] if not line.startswith(" ")]
    assert shown == sorted(str(p) for p in folder.rglob("*.png")) and len(lines) == 1 + 4 * 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in _one_line_error(_run(PREDICT, "--checkpoint", tmp_path / "run" / "last.npz", empty))
    helped = _run(PREDICT, "--help")
    assert "(default: 64)" in helped.stdout and "(default: auto)" in helped.stdout


# ------------------------------------------------------------------ faults of the machine, produced for real
@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
    """A real 8 MB tmpfs (root only): epoch 1's checkpoint (4.5 MB: the weights, the momentum and the weights'
    average; best.npz is a second name for it, no more bytes) fits, epoch 2's last.npz (written beside the old
    one, then renamed) does not."""
    write_cifar_batches(tmp_path / "data", per_batch=12, test=10)
    with small_filesystem(tmp_path / "disk", "8m") as disk:
        proc = _run(TRAIN, "--data-dir", tmp_path / "data", "--out", disk / "run", "--epochs", "3", "--schedule",
                    "constant", *TINY, cwd=tmp_path)
        line = _one_line_error(proc)
        assert proc.returncode == 1
        assert re.fullmatch(rf"error: no space left on device writing {re.escape(str(disk / 'run' / 'last.npz'))} "
                            rf"\(needs 4\.5 MB, [\d.]+ (MB|kB|bytes) free\): the checkpoint "
                            rf"{re.escape(str(disk / 'run' / 'last.npz'))} \(epoch 1\) is kept; free some space, then "
                            rf"continue with --resume {re.escape(str(disk / 'run'))}", line), line
        from npalexnet.train import load_checkpoint
        assert load_checkpoint(disk / "run" / "last.npz").meta["epoch"] == 1
        assert temporary_files(disk) == []


@pytest.mark.slow
def test_a_file_size_limit_ends_in_one_line(tmp_path):
    """ulimit -f: the kernel refuses the first checkpoint's bytes beyond 1 MB (EFBIG); any user."""
    write_cifar_batches(tmp_path / "data", per_batch=12, test=10)
    proc = _run(TRAIN, "--data-dir", tmp_path / "data", "--out", tmp_path / "run", "--epochs", "1", *TINY,
                cwd=tmp_path, env={"NPALEXNET_TEST_FSIZE": str(1_000_000)}, prelude=RLIMIT_PRELUDE)
    line = _one_line_error(proc)
    assert re.fullmatch(rf"error: file too large for this process's file-size limit \(ulimit -f\) writing "
                        rf"{re.escape(str(tmp_path / 'run' / 'last.npz'))} \(needs 4\.5 MB, .* free\): no "
                        r"checkpoint was written; raise the file-size limit \(ulimit -f\), then start again",
                        line), line
    assert temporary_files(tmp_path / "run") == [] and not (tmp_path / "run" / "last.npz").exists()
    assert "epoch 1/1" not in proc.stdout and "error: file too large" in (tmp_path / "run" / "log.txt").read_text()


def test_an_unwritable_out_is_one_line_before_any_training(tmp_path):
    write_cifar_batches(tmp_path / "data", per_batch=4, test=4)
    with read_only_folder(tmp_path / "locked") as locked:
        proc = _run(TRAIN, "--data-dir", tmp_path / "data", "--out", locked / "run", *TINY, cwd=tmp_path)
    line = _one_line_error(proc)
    assert proc.returncode == 1 and f"cannot write to --out {locked / 'run'}: " in line
    assert proc.stdout.splitlines() == [f"run: {locked / 'run'}"]   # nothing loaded, nothing trained


@pytest.mark.slow
def test_a_broken_image_in_an_imagefolder_tree_is_skipped_and_named(tmp_path):
    """Decided in npalexnet/data/store.py: a file that does not decode is skipped, never a shifted label, with a
    warning that names it (on the screen and in log.txt); the run goes on with the readable images."""
    data = write_imagefolder(tmp_path / "folder", per_class=2)
    (data / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not the rest of a JPEG")
    proc = _run(TRAIN, "--data-dir", data, "--out", tmp_path / "run", "--epochs", "1", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stdout.splitlines() if line.startswith("warning: skipped 1 unreadable image")]
    assert len(warning) == 1 and f"of {data / 'train'}: cat/broken.jpg (" in warning[0]
    counts = re.search(r"data: .*: (\d+) train, (\d+) validation", proc.stdout)
    assert int(counts[1]) + int(counts[2]) == 8                     # the 8 readable images of 9 files
    assert warning[0] in (tmp_path / "run" / "log.txt").read_text()
