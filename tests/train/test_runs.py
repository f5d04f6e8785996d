"""Run folders: a new one per run (never overwriting), the latest run, what --resume points at."""

from __future__ import annotations

import os
import time

import pytest

from npalexnet.train import CheckpointError
from npalexnet.train.runs import LATEST, latest_run, mark_latest, new_run_folder, resolve_run, runs_base


def test_new_runs_get_new_folders_even_in_the_same_second(tmp_path):
    now = time.mktime((2026, 12, 2, 4, 12, 33, 0, 0, -1))
    first, second, third = (new_run_folder(tmp_path, now) for _ in range(3))
    assert [p.name for p in (first, second, third)] == ["2026-12-02_041233", "2026-12-02_041233_2",
                                                        "2026-12-02_041233_3"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in (first, second, third))


def test_latest_points_at_the_run_marked_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = runs_base("cifar10")
    first, second = new_run_folder(base), new_run_folder(base, time.time() + 1)
    assert not (base / LATEST).exists()   # nothing saved yet: nothing to point at
    mark_latest(second, "cifar10")
    assert (base / LATEST).resolve() == second.resolve()
    mark_latest(first, "cifar10")
    assert (base / LATEST).resolve() == first.resolve() and os.readlink(base / LATEST) == first.name
    mark_latest(tmp_path / "elsewhere", "cifar10")   # an --out outside runs/<dataset>: left alone
    assert (base / LATEST).resolve() == first.resolve()


def _run_with_checkpoint(folder, age=0.0):
    folder.mkdir(parents=True)
    (folder / "last.npz").write_bytes(b"x")
    stamp = time.time() - age
    os.utime(folder / "last.npz", (stamp, stamp))
    return folder


def test_the_latest_run_is_the_one_saved_last(tmp_path):
    assert latest_run(tmp_path / "none") is None
    older = _run_with_checkpoint(tmp_path / "b", age=100)
    newer = _run_with_checkpoint(tmp_path / "a", age=1)
    (tmp_path / "c").mkdir()   # a run that never saved
    os.symlink("b", tmp_path / LATEST)
    assert latest_run(tmp_path) == newer and older != newer


def test_a_new_run_without_out_gets_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt, out = resolve_run(None, None, "cifar10")
    assert ckpt is None and out.parent == runs_base("cifar10") and out.is_dir()
    _, again = resolve_run(None, None, "cifar10")
    assert again != out


def test_an_explicit_out_is_exact_and_never_overwritten(tmp_path):
    run = _run_with_checkpoint(tmp_path / "run")
    with pytest.raises(CheckpointError, match=rf"{run} already holds a run .*--resume {run}.*--overwrite"):
        resolve_run(None, str(run), "cifar10")
    assert resolve_run(None, str(run), "cifar10", overwrite=True) == (None, run)
    assert resolve_run(None, str(tmp_path / "new"), "cifar10") == (None, tmp_path / "new")


def test_resume_last_finds_the_latest_run_or_says_there_is_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"--resume last: no run with a checkpoint under runs/cifar10"):
        resolve_run("last", None, "cifar10")
    run = _run_with_checkpoint(tmp_path / "runs" / "cifar10" / "2026-12-02_041233")
    for resume in ("last", True):
        ckpt, out = resolve_run(resume, None, "cifar10")
        assert ckpt.resolve() == (run / "last.npz").resolve() and out.resolve() == run.resolve()
    other = _run_with_checkpoint(tmp_path / "elsewhere")   # with --out, "last" is that folder's run
    assert resolve_run("last", str(other), "cifar10") == (other / "last.npz", other)


def test_resume_takes_a_folder_or_a_checkpoint_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _run_with_checkpoint(tmp_path / "run")
    assert resolve_run(str(run), None, "cifar10") == (run / "last.npz", run)
    assert resolve_run(str(run / "last.npz"), None, "cifar10") == (run / "last.npz", run)
    (run / "best.npz").write_bytes(b"x")
    ckpt, out = resolve_run(str(run / "best.npz"), None, "cifar10")   # best.npz goes on in a new folder
    assert ckpt == run / "best.npz" and out != run and out.parent == runs_base("cifar10")
    with pytest.raises(CheckpointError, match=r"already holds a run"):   # ...and never over another run
        resolve_run(str(run / "best.npz"), str(run), "cifar10")
    other = _run_with_checkpoint(tmp_path / "other")   # a folder continued into another run's --out: the same
    with pytest.raises(CheckpointError, match=rf"{other} already holds a run"):
        resolve_run(str(run), str(other), "cifar10")
    assert resolve_run(str(run), str(other), "cifar10", overwrite=True) == (run / "last.npz", other)
    assert resolve_run(str(run), str(run), "cifar10") == (run / "last.npz", run)   # its own folder: a resume


def test_resume_points_at_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"--resume .*empty: the folder holds no checkpoint \(last\.npz\)$"):
        resolve_run(str(tmp_path / "empty"), None, "cifar10")
    (tmp_path / "empty" / "best.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"it holds .*best\.npz: --resume .*best\.npz"):
        resolve_run(str(tmp_path / "empty"), None, "cifar10")
    with pytest.raises(CheckpointError, match=r"--resume .*nowhere: no such run folder or checkpoint file"):
        resolve_run(str(tmp_path / "nowhere"), None, "cifar10")
    with pytest.raises(CheckpointError, match=r"the folder does not exist"):
        resolve_run("last", str(tmp_path / "missing"), "cifar10")
