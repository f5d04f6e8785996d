"""Write files so that a crash never leaves half a file under the real name.

The data goes to a temporary file in the destination's directory (same file
system, so the rename is atomic), is flushed and fsynced, then
``os.replace``-d over the destination; the directory is fsynced so the rename
itself survives a power cut. A reader sees the old file or the new one.

A write that fails because the disk is full (``ENOSPC``), a quota is
exhausted (``EDQUOT``) or the process's file-size limit is reached
(``EFBIG``, ``ulimit -f``) raises :class:`NoSpaceError`, which names the
file, the space it needs and the space that is free; the temporary file is
removed and the previous file is kept.

:func:`atomic_link` gives a second name to a file written this way (a hard
link, so nothing is written twice). That is safe only because every writer
here replaces a file (a new inode under the name) and never writes into it:
the next version of the source leaves the link on the old bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy

#: The errno values of "the file does not fit": disk full, quota exceeded, file-size limit.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class NoSpaceError(OSError):
    """A file that did not fit where it was written; the previous file (if any) is intact.

    Attributes:
        path: the destination.
        needed: the bytes the file needs (exact or estimated), or None when unknown.
        free: the bytes free on the destination's file system (None when it cannot be read).
    """

    def __init__(self, path, needed: int | None, cause: OSError, at_least: bool = False):
        self.path, self.needed = Path(path), needed
        self.free = free_bytes(self.path.parent)
        reason = {errno.EDQUOT: "disk quota exceeded",
                  errno.EFBIG: "file too large for this process's file-size limit (ulimit -f)"}.get(
                      cause.errno, "no space left on device")
        space = [f"needs {'at least ' if at_least else ''}{human_bytes(needed)}"] if needed is not None else []
        if self.free is not None:
            space.append(f"{human_bytes(self.free)} free")
        super().__init__(cause.errno, f"{reason} writing {self.path}" + (f" ({', '.join(space)})" if space else ""))

    def __str__(self) -> str:
        return self.strerror

    @property
    def advice(self) -> str:
        """What makes room: "free some space", or for the other two causes what they need."""
        return {errno.EDQUOT: "free some space or raise your quota",
                errno.EFBIG: "raise the file-size limit (ulimit -f)"}.get(self.errno, "free some space")


def human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as disk sizes are sold and ``df -H`` shows them)."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"   # pragma: no cover


def free_bytes(folder) -> int | None:
    """Bytes free for this user on ``folder``'s file system (None when it cannot be read)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def atomic_write(path, write: Callable[[IO[bytes]], None], size: int | None = None) -> Path:
    """Call ``write(f)`` on a temporary binary file, then move it to ``path``.

    ``size``: the bytes ``write`` will write, when known (for the message of a full disk).

    Raises:
        NoSpaceError: the disk, a quota or the file-size limit is full (nothing was changed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        # Ctrl-C or a full disk while writing: remove the partial file, keep the old one.
        written = _size(tmp)
        _remove(tmp)
        if _is_no_space(exc):
            raise NoSpaceError(path, size if size is not None else written, exc, at_least=size is None) from exc
        raise
    return _move_into_place(tmp, path)


def npz_size(arrays: dict) -> int:
    """About the bytes ``numpy.savez`` writes for ``arrays`` (data, .npy headers, zip entries)."""
    return sum(numpy.asarray(a).nbytes + 2 * len(name) + 200 for name, a in arrays.items()) + 22


def atomic_savez(path, arrays: dict) -> Path:
    """``numpy.savez`` (uncompressed: checkpoints are mostly incompressible floats) atomically."""
    return atomic_write(path, lambda f: numpy.savez(f, **arrays), size=npz_size(arrays))


def atomic_link(src, path) -> Path:
    """Make ``path`` hold the bytes of ``src`` atomically: a hard link, or a copy where the file system
    has none (a reader of ``path`` sees the old file or ``src``'s bytes).

    Raises:
        NoSpaceError: a copy that did not fit (nothing was changed).
    """
    src, path = Path(src), Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        os.link(src, tmp)
    except OSError:   # no hard links here (FAT, some network file systems, across devices): copy
        with open(src, "rb") as source:
            return atomic_write(path, lambda f: shutil.copyfileobj(source, f), size=src.stat().st_size)
    return _move_into_place(tmp, path)


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), size=len(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _move_into_place(tmp, path: Path) -> Path:
    """The one commit step of every write here: rename the finished temporary file over ``path``
    (atomic on one file system), then fsync the directory so the rename survives a power cut.

    Raises:
        NoSpaceError: the directory had no room for the new entry (``rename`` can fail so); the
            temporary file is removed and ``path`` keeps its old file.
    """
    try:
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if _is_no_space(exc):   # the data is written; what did not fit is the directory entry
            raise NoSpaceError(path, None, exc) from exc
        raise
    _fsync_dir(path.parent)
    return path


def _is_no_space(exc: BaseException) -> bool:
    """A file system's "does not fit" (disk, quota or file-size limit), not yet named as such."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS and not isinstance(exc, NoSpaceError)


def _remove(tmp) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _size(tmp) -> int | None:
    try:
        return os.path.getsize(tmp) if tmp is not None else None
    except OSError:
        return None


def _umask() -> int:
    mask = os.umask(0)   # the only way to read it is to set it
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):   # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
