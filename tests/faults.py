"""Faults of the machine, made for real where the test may make them, injected where it may not.

* :func:`small_filesystem`: a tmpfs of a few MB (a real ENOSPC), where the
  tests run as root and may mount; else the test is skipped with the reason.
* :func:`read_only_folder`: a folder this process cannot write into: mode
  0555 for an ordinary user; for root (whom modes do not stop) a read-only
  tmpfs, where it may mount; else the test is skipped with the reason.
* :func:`fill_disk`: injects ENOSPC into the atomic writes of files whose
  names match (the write itself fails part-way, as on a full disk), and into
  the appends of ``log.txt``: every user, every platform.
* :data:`RLIMIT_PRELUDE`: a process whose files may not exceed a size
  (``ulimit -f``): the kernel's EFBIG on the write that crosses it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _mount_tmpfs(where: Path, options: str) -> bool:
    if not IS_ROOT or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                            check=False)
    return result.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True, check=False)


@contextlib.contextmanager
def small_filesystem(where: Path, size: str):
    """``where`` becomes a tmpfs of ``size`` (e.g. "8m") for the block; skips when mounting is impossible."""
    where.mkdir(parents=True, exist_ok=True)
    if not _mount_tmpfs(where, f"size={size}"):
        pytest.skip("a real full disk needs a small tmpfs: mounting one needs root (the injected-fault tests "
                    "cover the same code on every machine)")
    try:
        yield where
    finally:
        _umount(where)


@contextlib.contextmanager
def read_only_folder(where: Path):
    """A folder nobody in this process can write into: mode 0555, or for root a read-only tmpfs."""
    where.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT:
        where.chmod(0o555)
        try:
            yield where
        finally:
            where.chmod(0o755)
        return
    if not _mount_tmpfs(where, "ro,size=1m"):
        pytest.skip("root may write into any folder; a read-only one needs a read-only mount, which failed here")
    try:
        yield where
    finally:
        _umount(where)


def fill_disk(monkeypatch, names=(), after_bytes: int = 0, log_txt: bool = False) -> None:
    """From now on, atomic writes of files named in ``names`` (or whose name ends with one of them) fail with
    ENOSPC once ``after_bytes`` of them are written (the temporary file is left half-written, as on a
    full disk, for atomic_write to remove); with ``log_txt``, appends to a run's log.txt fail too."""
    from npalexnet.data import atomic
    from npalexnet.train import runlog

    real_fdopen = os.fdopen

    class _FullFile:
        def __init__(self, file):
            self._file, self._written = file, 0

        def write(self, data):
            room = max(after_bytes - self._written, 0)
            if len(data) > room:
                self._file.write(bytes(data[:room]))
                self._written += room
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._written += len(data)
            return self._file.write(data)

        def __getattr__(self, name):
            return getattr(self._file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

    class _OsWithFullDisk:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def fdopen(fd, *args, **kwargs):
            file = real_fdopen(fd, *args, **kwargs)
            name = Path(os.readlink(f"/proc/self/fd/{fd}")).name   # .<destination>.<random>.tmp
            if any(name.startswith(f".{n}.") for n in names):
                return _FullFile(file)
            return file

    monkeypatch.setattr(atomic, "os", _OsWithFullDisk())
    if log_txt:
        def full_open(path, *args, **kwargs):
            file = open(path, *args, **kwargs)
            if Path(path).name == runlog.LOG_TXT:
                def write(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                file.write = write
            return file
        monkeypatch.setattr(runlog, "open", full_open, raising=False)


def no_hard_links(monkeypatch, code: int = errno.EPERM) -> None:
    """From now on ``os.link`` fails as on a file system without hard links (FAT answers EPERM; a link
    across devices EXDEV), so that a second name for a file costs a copy."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)


def temporary_files(folder: Path) -> list[str]:
    """What an interrupted atomic write would leave: ``.<name>.<random>.tmp`` files."""
    return sorted(p.name for p in Path(folder).rglob(".*.tmp"))


#: Python code that makes this process's files stop at ``NPALEXNET_TEST_FSIZE`` bytes (the kernel then
#: fails the write that crosses it with EFBIG; SIGXFSZ, which would kill the process, is ignored). The
#: process writes no bytecode: importlib does not check its writes, and a .pyc cut at the limit would
#: break every later import of that module.
RLIMIT_PRELUDE = (
    "import os, resource, signal, runpy, sys; sys.dont_write_bytecode = True; "
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "limit = int(os.environ['NPALEXNET_TEST_FSIZE']); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
