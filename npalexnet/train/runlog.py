"""A run's own record: ``log.txt`` (every line it prints, time-stamped) and ``config.json`` (what it is).

``config.json`` holds the whole recipe (every field of
:class:`~npalexnet.train.TrainConfig`), the command line and the package
version; ``--config FILE`` starts a new run from it (:func:`read_config_file`).
It is rewritten (atomically) each time the run starts or resumes.
``log.txt`` is appended to, one line per printed line, each prefixed with
the local date and time; a resumed run adds to it, and a run that
``--overwrite``-s another drops the other's lines once it replaces it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

from .. import __version__
from ..data.atomic import NO_SPACE_ERRNOS, NoSpaceError, atomic_write_bytes, atomic_write_text
from .config import INVOCATION_FIELDS, TrainConfig

LOG_TXT, CONFIG_JSON = "log.txt", "config.json"


class ConfigFileError(ValueError):
    """A ``--config`` file that cannot be read or holds options this version does not know."""


class RunLog:
    """A log function (``log(text)``) that prints and, once :meth:`attach`-ed to a folder, appends to its log.txt.

    Lines logged before :meth:`attach` are kept and written first. A full disk
    while appending raises :class:`~npalexnet.data.atomic.NoSpaceError` once;
    after that the run goes on printing only.
    """

    def __init__(self, echo=print):
        self.echo = echo
        self.path: Path | None = None
        self._pending: list[str] = []
        self._file = None
        self._start = 0

    def __call__(self, text="") -> None:
        self.echo(text)
        self.record(str(text))

    def record(self, text: str) -> None:
        """Into log.txt only (e.g. the error line a program prints on stderr)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"{stamp}  {line}".rstrip() for line in str(text).strip("\n").splitlines() or [""]]
        if self.path is None:
            self._pending += lines
        else:
            self._write(lines)

    def attach(self, folder) -> RunLog:
        """Start appending to ``folder/log.txt`` (the lines so far first)."""
        self.path = Path(folder) / LOG_TXT
        self._start = self.path.stat().st_size if self.path.is_file() else 0   # where this run's lines begin
        self._file = open(self.path, "a", encoding="utf-8")   # closed by close()
        pending, self._pending = self._pending, []
        self._write(pending)
        return self

    def drop_earlier(self) -> str | None:
        """Keep only this run's lines in log.txt (``--overwrite``: those before them are the replaced run's).

        The file is rewritten atomically (a crash leaves the old one or the new one, whole); appending
        goes on after it. Returns None, or why the file could not be rewritten (a full disk: the earlier
        lines then stay and the run goes on; a log is not worth a run).
        """
        if self._file is None or not self._start:
            return None
        try:
            self._file.flush()
            with open(self.path, "rb") as file:
                file.seek(self._start)
                ours = file.read()
            self.close()
            atomic_write_bytes(self.path, ours)
            self._start = 0
        except OSError as exc:
            return str(exc)
        finally:
            if self._file is None:
                with contextlib.suppress(OSError):
                    self._file = open(self.path, "a", encoding="utf-8")
        return None

    def _write(self, lines: list[str]) -> None:
        if self._file is None or not lines:
            return   # detached after a failed write
        data = "".join(line + "\n" for line in lines)
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            self.close()
            if exc.errno in NO_SPACE_ERRNOS:
                raise NoSpaceError(self.path, len(data.encode()), exc) from exc
            raise

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):   # a full disk may fail the last flush too
                file.close()


def config_record(cfg: TrainConfig, command: list[str] | None) -> dict:
    """What ``config.json`` holds: the package version, the command line, when the run started (now) and
    every option of the run."""
    return {"npalexnet": __version__, "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": cfg.to_dict()}


def write_config_json(folder, record: dict) -> Path:
    """``folder/config.json`` from a :func:`config_record`."""
    return atomic_write_text(Path(folder) / CONFIG_JSON, json.dumps(record, indent=2) + "\n")


def read_config_file(path) -> dict:
    """The options of a ``--config`` file: a run's ``config.json`` or a plain JSON object of options.

    Raises:
        ConfigFileError: unreadable, not JSON, not an object, an unknown option, or a value of the wrong type.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(f"--config {path}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ConfigFileError(f"--config {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"--config {path}: expected a JSON object of options, got {type(data).__name__}")
    from_run = isinstance(data.get("config"), dict)
    options = dict(data["config"] if from_run else data)
    for name in INVOCATION_FIELDS if from_run else ("resume",):
        options.pop(name, None)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigFileError(f"--config {path}: unknown option{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(unknown)} (this is npalexnet {__version__})")
    for name, value in options.items():
        if not _same_kind(value, defaults[name]):
            raise ConfigFileError(f"--config {path}: {name} must be {_kind(defaults[name])}, got {value!r}")
    return options


def _same_kind(value, default) -> bool:
    if value is None or default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _kind(default) -> str:
    return {bool: "true or false", int: "a number", float: "a number", str: "a string"}.get(type(default), "a value")
