"""Faults of the machine during a run (issue 16): each produced, each one line naming what is kept.

Full disks are injected into the write itself (tests/faults.py: every machine) for each file a run
writes; a real full tmpfs and a real file-size limit run through the script in test_scripts.py.
"""

from __future__ import annotations

import errno
import re

import numpy
import pytest

from npalexnet.data import atomic
from npalexnet.train import CheckpointError, fit, load_checkpoint
from npalexnet.train import run as run_module
from npalexnet.train.faults import RunError, check_writable, is_out_of_memory
from npalexnet.train.history import read_metrics_csv
from tests.fakedata import write_imagefolder
from tests.faults import IS_ROOT, fill_disk, no_hard_links, read_only_folder, temporary_files

from .test_run import _config


def _fail_from_epoch(monkeypatch, epoch: int, exc: BaseException, where: str = "train_one_epoch") -> None:
    """Raise ``exc`` in the training (or the evaluation) of ``epoch`` (1-based) and later ones."""
    real = getattr(run_module, where)
    seen = {"epochs": 0}

    def failing(*args, **kwargs):
        if where == "train_one_epoch":
            if kwargs["epoch"] + 1 >= epoch:
                raise exc
        else:
            seen["epochs"] += 1
            if seen["epochs"] >= epoch:
                raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, where, failing)


# --------------------------------------------------------------------------- no space left
#: (file, the epoch whose write of it fails, the epoch of the last.npz kept, rows left in metrics.csv)
FULL_DISK_CASES = [("last.npz", 2, 1, 1), ("best.npz", 1, 1, 0), ("metrics.csv", 2, 2, 1), ("curves.png", 2, 2, 2)]


@pytest.mark.parametrize("name, failing_epoch, kept_epoch, rows", FULL_DISK_CASES)
def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(cifar_dir, tmp_path, monkeypatch, name,
                                                                   failing_epoch, kept_epoch, rows):
    """The disk fills up during ``failing_epoch``: the write of ``name`` fails part-way."""
    real_end = run_module._Run._end_of_epoch

    def end_of_epoch(self, epoch, stats):
        if epoch + 1 == failing_epoch:
            fill_disk(monkeypatch, names=[name], after_bytes=100)
            if name == "best.npz":   # a link to last.npz takes no room: a file system without hard links copies
                no_hard_links(monkeypatch)
        return real_end(self, epoch, stats)

    monkeypatch.setattr(run_module._Run, "_end_of_epoch", end_of_epoch)
    with pytest.raises(RunError) as caught:
        fit(_config(cifar_dir, tmp_path, schedule="constant"), log=lambda *a: None)
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(rf"^no space left on device writing {re.escape(str(tmp_path / name))} \(needs [\d.]+ "
                     r"(kB|MB|bytes)(, [\d.]+ (kB|MB|GB|bytes) free)?\): ", message), message
    assert f"the checkpoint {tmp_path / 'last.npz'} (epoch {kept_epoch}) is kept" in message
    assert message.endswith(f"free some space, then continue with --resume {tmp_path}")
    assert load_checkpoint(tmp_path / "last.npz").meta["epoch"] == kept_epoch   # whole and loadable
    assert temporary_files(tmp_path) == []
    assert (len(read_metrics_csv(tmp_path / "metrics.csv")) if rows else 0) == rows
    assert (tmp_path / "log.txt").read_text().rstrip().endswith(f"error: {message}")


def test_a_full_disk_on_the_first_checkpoint_says_none_was_written(cifar_dir, tmp_path, monkeypatch):
    fill_disk(monkeypatch, names=["last.npz"], after_bytes=0)
    with pytest.raises(RunError, match=r"writing .*last\.npz \(needs .*\): no checkpoint was written; free some "
                                       r"space, then start again"):
        fit(_config(cifar_dir, tmp_path), log=lambda *a: None)
    assert not (tmp_path / "last.npz").exists() and temporary_files(tmp_path) == []


def test_a_full_disk_for_config_json_stops_before_training(cifar_dir, tmp_path, monkeypatch):
    fill_disk(monkeypatch, names=["config.json"])
    lines = []
    with pytest.raises(atomic.NoSpaceError, match=r"no space left on device writing .*config\.json \(needs "):
        fit(_config(cifar_dir, tmp_path), log=lines.append)
    assert not any(str(line).startswith(("data:", "epoch")) for line in lines)
    assert temporary_files(tmp_path) == [] and not (tmp_path / "config.json").exists()


def test_a_full_disk_for_log_txt(cifar_dir, tmp_path, monkeypatch):
    fill_disk(monkeypatch, log_txt=True)
    with pytest.raises(atomic.NoSpaceError, match=r"no space left on device writing .*log\.txt \(needs \d+ bytes"):
        fit(_config(cifar_dir, tmp_path), log=lambda *a: None)


def test_the_file_size_limit_and_quota_are_reported_as_such(tmp_path):
    for code, words in ((errno.EFBIG, "file too large for this process's file-size limit (ulimit -f)"),
                        (errno.EDQUOT, "disk quota exceeded")):
        error = atomic.NoSpaceError(tmp_path / "f", 2_500_000, OSError(code, "x"))
        assert str(error).startswith(f"{words} writing {tmp_path / 'f'} (needs 2.5 MB, ")
        assert isinstance(error, OSError) and error.errno == code


# --------------------------------------------------------------------------- unwritable places
def test_an_unwritable_out_is_reported_before_any_training(cifar_dir, tmp_path):
    lines = []
    with read_only_folder(tmp_path / "locked") as locked:
        with pytest.raises(RunError, match=rf"cannot write to --out {re.escape(str(locked / 'run'))}: "
                                           r"(Permission denied|Read-only file system); choose a folder"):
            fit(_config(cifar_dir, locked / "run"), log=lines.append)
    assert lines == [f"run: {locked / 'run'}"]   # no data loaded, no model built


def test_an_unwritable_cache_dir_is_reported_before_any_decoding(tmp_path):
    data = write_imagefolder(tmp_path / "folder", per_class=2)
    lines = []
    with read_only_folder(tmp_path / "cache") as cache:
        with pytest.raises(RunError, match=r"cannot write to --cache-dir .*cache"):
            fit(_config(data, tmp_path / "run", cache_dir=str(cache / "sub")), log=lines.append)
    assert not any("decoded" in str(line) for line in lines)


def test_check_writable_creates_the_folder_and_leaves_nothing(tmp_path):
    assert check_writable(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []


@pytest.mark.skipif(IS_ROOT, reason="root may write into a folder without permission")
def test_a_folder_without_permission(tmp_path):
    (tmp_path / "closed").mkdir(mode=0o500)
    with pytest.raises(RunError, match="Permission denied"):
        check_writable(tmp_path / "closed", "--out")


# --------------------------------------------------------------------------- out of memory
def test_out_of_memory_in_training_names_the_batch_size_and_keeps_the_checkpoint(cifar_dir, tmp_path, monkeypatch):
    _fail_from_epoch(monkeypatch, 2, MemoryError())
    with pytest.raises(RunError) as caught:
        fit(_config(cifar_dir, tmp_path), log=lambda *a: None)
    assert str(caught.value) == (f"out of memory in a training step at --batch-size 16 on cpu; try a smaller "
                                 f"--batch-size (e.g. --batch-size 8): the checkpoint {tmp_path / 'last.npz'} "
                                 f"(epoch 1) is kept; continue with --resume {tmp_path} --batch-size 8 --override")
    assert load_checkpoint(tmp_path / "last.npz").meta["epoch"] == 1


def test_the_suggested_resume_with_a_smaller_batch_works(cifar_dir, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _fail_from_epoch(m, 2, MemoryError())
        with pytest.raises(RunError):
            fit(_config(cifar_dir, tmp_path, epochs=2), log=lambda *a: None)
    with pytest.raises(CheckpointError, match=r"--batch-size \(saved 16, given 8\)"):
        fit(_config(cifar_dir, tmp_path, resume=True, batch_size=8), log=lambda *a: None)
    lines = []
    result = fit(_config(cifar_dir, tmp_path, resume=True, batch_size=8, override=True), log=lines.append)
    assert "override: --batch-size 16 -> 8 (saved in last.npz)" in lines
    assert [row["epoch"] for row in result.history] == [1, 2] and result.config.batch_size == 8


def test_out_of_gpu_memory_during_validation_suggests_the_eval_batch_size(cifar_dir, tmp_path, monkeypatch):
    OutOfMemoryError = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})
    _fail_from_epoch(monkeypatch, 2, OutOfMemoryError("Out of memory allocating 1,024 bytes"), where="scores")
    with pytest.raises(RunError, match=r"out of GPU memory in validation at --eval-batch-size 32 on cpu \(Out of "
                                       r"memory allocating 1,024 bytes\); try a smaller --eval-batch-size \(e\.g\. "
                                       r"--eval-batch-size 16\): the checkpoint .*last\.npz \(epoch 1\) is kept"):
        fit(_config(cifar_dir, tmp_path), log=lambda *a: None)


def test_out_of_memory_is_recognised_by_class():
    assert is_out_of_memory(MemoryError()) and not is_out_of_memory(ValueError())
    assert is_out_of_memory(type("OutOfMemoryError", (Exception,), {"__module__": "cupy.cuda.memory"})())


# --------------------------------------------------------------------------- corrupt inputs
def test_a_truncated_decode_cache_is_detected_and_rebuilt(tmp_path):
    """A store's index cut short: the store is ignored (said so) and that split decoded again."""
    data = write_imagefolder(tmp_path / "folder", per_class=2)
    fit(_config(data, tmp_path / "a", epochs=1), log=lambda *a: None)
    indexes = sorted((data / ".npalexnet-cache").glob("*.index.npz"))
    assert len(indexes) == 2
    indexes[0].write_bytes(indexes[0].read_bytes()[:200])   # cut short
    lines = []
    fit(_config(data, tmp_path / "b", epochs=1), log=lines.append)
    assert sum(str(line).startswith("ignoring a damaged image store") for line in lines) == 1
    assert sum(str(line).startswith("decoded ") for line in lines) == 1   # the damaged split only
    with numpy.load(indexes[0]) as z:
        assert z["labels"].shape[0] == 8
    assert temporary_files(data) == []


def test_a_resume_folder_without_a_checkpoint(cifar_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"--resume .*empty: the folder holds no checkpoint \(last\.npz\)"):
        fit(_config(cifar_dir, None, resume=str(tmp_path / "empty")), log=lambda *a: None)


def test_a_truncated_checkpoint_on_resume(cifar_dir, tmp_path):
    fit(_config(cifar_dir, tmp_path, epochs=1), log=lambda *a: None)
    data = (tmp_path / "last.npz").read_bytes()
    (tmp_path / "last.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.npz is not a readable checkpoint \(corrupt or truncated"):
        fit(_config(cifar_dir, tmp_path, resume=True), log=lambda *a: None)
