"""Faults of the machine, not of the recipe: a full disk, an unwritable folder, too little memory.

Each becomes a :class:`RunError` whose message is one line: what happened,
what is safe (the last checkpoint, named), and what to do next. The
training program prints it as ``error: ...`` and exits with status 1.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class RunError(Exception):
    """A run stopped by its machine: disk full, folder not writable, out of memory (one-line message)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """The host's MemoryError, or CuPy's OutOfMemoryError (a MemoryError too; matched by name as well,
    so this module needs no CuPy)."""
    return isinstance(exc, MemoryError) or (type(exc).__name__ == "OutOfMemoryError"
                                            and type(exc).__module__.startswith("cupy"))


def out_of_memory_message(exc: BaseException, phase: str, batch_size: int, device: str, option: str) -> str:
    """One line for an allocation that failed in ``phase`` ("a training step", "validation", "the test")."""
    smaller = max(1, batch_size // 2)
    what = "GPU memory" if type(exc).__module__.startswith("cupy") else "memory"
    detail = f" ({exc})" if str(exc) and type(exc).__module__.startswith("cupy") else ""
    return (f"out of {what} in {phase} at {option} {batch_size} on {device}{detail}; "
            f"try a smaller {option} (e.g. {option} {smaller})")


def check_writable(folder, what: str) -> Path:
    """Create ``folder`` (and its parents) and prove a file can be written there, before any training time
    is spent. Raises :class:`RunError` naming ``what`` (e.g. "--out") and the reason."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RunError(f"cannot write to {what} {folder}: {reason}"
                       f"{'' if exc.filename in (None, str(folder)) else f' ({exc.filename})'}; "
                       f"choose a folder you can write to") from exc
    return folder
