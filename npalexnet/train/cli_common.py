"""What the command-line programs share: help that shows defaults, and one line for every user-facing error.

The programs (``npalexnet-train``, ``npalexnet-predict``,
``npalexnet-visualize``, and the example scripts that wrap them) print
``error: <message>`` on stderr and exit with status 1 for bad data, a bad
checkpoint, a full disk, an unwritable folder or too little memory: never
a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .. import backend
from ..data import DataError
from ..data.atomic import NoSpaceError
from ..models import FreezeError, PretrainedError
from .checkpoint import CheckpointError
from .config import ScheduleError
from .faults import RunError, is_out_of_memory
from .runlog import ConfigFileError
from .step import NonFiniteLossError

#: Errors whose message is the whole story: printed as one line, exit status 1.
USER_ERRORS = (DataError, CheckpointError, NonFiniteLossError, PretrainedError, FreezeError, RunError,
               ConfigFileError, NoSpaceError, ScheduleError)


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` where the help does not already say it; on/off flags get none."""

    def _get_help_string(self, action):
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if "default" in text or flag or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def error_line(exc: BaseException) -> str | None:
    """The one line for an error a user can act on, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    if is_out_of_memory(exc):
        return f"out of memory ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); try a smaller --batch-size"
    if isinstance(exc, OSError):   # a file that cannot be read or written: errno, reason and the file
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}" if exc.strerror else str(exc)
    return None


def report(exc: BaseException, stream=None) -> int:
    """Print ``error: <the one line>`` and return 1; re-raise what is not a user's error."""
    line = error_line(exc)
    if line is None:
        raise exc
    print(f"error: {line}", file=stream or sys.stderr)
    return 1


def device_error(device: str) -> str | None:
    """Why ``device`` cannot be used here (no CuPy, no GPU N), or None when it can."""
    try:
        backend.resolve_device(device)
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    return None
