"""Where a run's files go: a new folder for every new run, and the checkpoint a ``--resume`` names.

* A new run without ``--out`` gets ``runs/<name>/<YYYY-mm-dd_HHMMSS>``
  (``_2``, ``_3``... when two start in the same second), created
  exclusively, so runs never collide. ``<name>`` is the dataset's
  (``runs/cifar10``), or the recipe's when it is not the default one
  (``runs/paper``: :attr:`~npalexnet.train.TrainConfig.runs_name`); ``runs/<name>/latest`` points at
  the run that wrote a checkpoint most recently (a symbolic link, where the
  file system has them), so it never leads to a run that failed at the start.
  ``--out DIR`` is used exactly as given, and a run already in it is never
  overwritten without ``--overwrite``.
* ``--resume`` takes a run folder (its ``last.npz``), a checkpoint file, or
  ``last``: the run under ``runs/<name>`` whose ``last.npz`` was written
  most recently (or the ``--out`` folder, when one is given). A checkpoint
  other than a folder's ``last.npz`` (``best.npz``, say) is continued in a
  new folder, so the run it came from keeps its files.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from .checkpoint import BEST, LAST, CheckpointError

RUNS_ROOT = "runs"
LATEST = "latest"


def runs_base(name: str, root=RUNS_ROOT) -> Path:
    """``runs/<name>``: where the runs of a dataset (or a recipe) get their folders."""
    return Path(root) / name


def new_run_folder(base, now: float | None = None) -> Path:
    """Create and return a new, empty ``base/<YYYY-mm-dd_HHMMSS>[_N]``."""
    base = Path(base)
    stamp = time.strftime("%Y-%m-%d_%H%M%S", time.localtime(now))
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        folder = base / (stamp if n == 1 else f"{stamp}_{n}")
        try:
            folder.mkdir()   # exclusive: two runs started in the same second get different folders
        except FileExistsError:
            continue
        return folder
    raise CheckpointError(f"{base} has 10,000 runs started at {stamp}")   # pragma: no cover


def mark_latest(folder, name: str) -> None:
    """Point ``runs/<name>/latest`` at ``folder`` when it is one of those run folders (an ``--out``
    elsewhere is left alone). Atomic; skipped where the file system has no symbolic links."""
    folder, base = Path(folder), runs_base(name)
    if folder.parent.resolve() != base.resolve() or folder.name == LATEST:
        return
    tmp = base / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(folder.name, tmp, target_is_directory=True)
        os.replace(tmp, base / LATEST)


def latest_run(base) -> Path | None:
    """The folder under ``base`` whose ``last.npz`` was written most recently, or None."""
    base = Path(base)
    if not base.is_dir():
        return None
    runs = [p for p in base.iterdir() if p.is_dir() and not p.is_symlink() and (p / LAST).is_file()]
    return max(runs, key=lambda p: (p / LAST).stat().st_mtime_ns, default=None)


def guard_existing_run(out: Path, overwrite: bool, keep=None) -> None:
    """A CheckpointError when ``out`` holds a run (its ``last.npz``) that this one would replace."""
    last = out / LAST
    if last.exists() and not overwrite and (keep is None or last.resolve() != Path(keep).resolve()):
        raise CheckpointError(f"{out} already holds a run ({last}): pass --resume {out} to continue it, "
                              "--overwrite to replace it, or choose another --out (without --out every run "
                              "gets a new folder)")


def resolve_run(resume, out, name: str, overwrite: bool = False) -> tuple[Path | None, Path]:
    """The checkpoint to continue from (None: a new run) and the run's folder (created when new).

    Args:
        resume: None/False (a new run), True or ``"last"``, a run folder, or a checkpoint file.
        out: ``--out`` (None: a new folder under ``runs/<name>``).
        name: :attr:`~npalexnet.train.TrainConfig.runs_name` (the dataset, or the recipe).
    Raises:
        CheckpointError: nothing to resume where ``resume`` points, or a run that would be overwritten.
    """
    base = runs_base(name)
    explicit = Path(out) if out else None
    if not resume:
        if explicit is None:
            return None, new_run_folder(base)
        guard_existing_run(explicit, overwrite)
        return None, explicit
    if resume is True or resume == "last":
        folder = explicit or latest_run(base)
        if folder is None:
            raise CheckpointError(f"--resume last: no run with a checkpoint under {base}; start a new run "
                                  f"without --resume, or give --resume RUN_FOLDER")
        return _checkpoint_in(folder), folder
    path = Path(resume)
    if path.is_dir():
        ckpt = _checkpoint_in(path)
        if explicit is not None:   # continued into another --out: never over a run there
            guard_existing_run(explicit, overwrite, keep=ckpt)
        return ckpt, explicit or path
    if path.is_file():
        if explicit is not None:
            guard_existing_run(explicit, overwrite, keep=path)
            return path, explicit
        if path.name == LAST:
            return path, path.parent
        return path, new_run_folder(base)   # continuing best.npz (or another file) never touches its run
    raise CheckpointError(f"--resume {resume}: no such run folder or checkpoint file (give a folder under "
                          f"{base}, a .npz checkpoint, or 'last')")


def _checkpoint_in(folder: Path) -> Path:
    if (folder / LAST).is_file():
        return folder / LAST
    hint = f"; it holds {folder / BEST}: --resume {folder / BEST}" if (folder / BEST).is_file() else ""
    what = "holds no checkpoint (last.npz)" if folder.is_dir() else "does not exist"
    raise CheckpointError(f"--resume {folder}: the folder {what}{hint}")
