"""Download a dataset's published files with the standard library: whole and verified, or not at all.

A file is streamed from its URL (``urllib``) into a temporary file beside its
destination (:func:`.atomic.atomic_write`), with a tqdm bar; its MD5 is compared
with the published one; only then is it renamed to its real name (same folder,
so the rename is atomic). An
archive is unpacked into a temporary folder beside its destination (``tarfile``
with the ``"data"`` extraction filter: no absolute paths, no ``..``, no links
out of the folder, no device files) and that folder is renamed into place.

Any failure (no connection, an HTTP error, a transfer cut short, a wrong
checksum, an unreadable archive, Ctrl-C) removes what was being written and,
except for Ctrl-C, raises a :class:`DownloadError` whose message is one line:
nothing half-made is ever left under a real name.

Mirrors: ``url`` (the training program's ``--download-url``), else the
environment variable ``NPALEXNET_DOWNLOAD_URL``, replaces the official
location. It is a folder holding the files under their official names: an
``http(s)://`` or ``file://`` URL, or a local folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .atomic import atomic_write
from .errors import DataError

ENV_URL = "NPALEXNET_DOWNLOAD_URL"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60          # a server silent for this long counts as gone
USER_AGENT = "npalexnet (Python urllib)"
MIRROR_HINT = f"a mirror or a local folder with the files: --download-url URL or ${ENV_URL}"


class DownloadError(DataError):
    """A download or an unpacking failed; nothing of it was kept."""


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name (the same on every mirror) and its published MD5 (hex)."""

    name: str
    md5: str


@dataclass(frozen=True)
class Remote:
    """A dataset's published files and the folder URL they are published under."""

    dataset: str
    url: str
    files: tuple[RemoteFile, ...]


def source_url(remote: Remote, url: str | None = None) -> str:
    """The folder URL to fetch ``remote``'s files from, ending in ``/``.

    ``url``, else ``$NPALEXNET_DOWNLOAD_URL``, else the official one. A local
    path becomes a ``file://`` URL; a URL that names one of the files (the
    archive's own address, pasted whole) stands for its folder.
    """
    chosen = url or os.environ.get(ENV_URL) or remote.url
    if "://" not in chosen:
        chosen = Path(chosen).expanduser().resolve().as_uri()
    chosen = chosen.rstrip("/")
    for file in remote.files:
        if chosen.endswith("/" + file.name):
            chosen = chosen[: -len(file.name) - 1]
    return chosen + "/"


def md5sum(path) -> str:
    """The MD5 of a file, read in chunks (hex)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path, file: RemoteFile) -> None:
    """Raise a one-line :class:`DownloadError` unless the file at ``path`` has ``file``'s published MD5."""
    _check_md5(md5sum(path), file, str(path), "remove it to download again")


def _check_md5(actual: str, file: RemoteFile, what: str, advice: str) -> None:
    if actual != file.md5:
        raise DownloadError(f"{what}: MD5 {actual} is not the published {file.md5} of {file.name} "
                            f"(a corrupt or different file); {advice}")


def fetch(remote: Remote, file: RemoteFile, folder, url: str | None = None, *, log=print,
          progress: bool = True) -> Path:
    """Download ``file`` of ``remote`` to ``folder/file.name``, verified, or raise one line.

    Args:
        remote, file: what to fetch (``file`` is one of ``remote.files``).
        folder: where it goes; created if missing.
        url: a mirror (see :func:`source_url`).
        log: called with one line before the download starts.
        progress: show a tqdm bar (only when stderr is a terminal).
    Raises:
        DownloadError: the server was not reached, answered with an error, sent
            fewer bytes than announced, or sent a file with another MD5; the
            temporary file is removed. Ctrl-C removes it too and re-raises.
    """
    address = source_url(remote, url) + file.name

    def download_and_check(f) -> None:   # raising here makes atomic_write remove the temporary file
        actual = _stream(address, f, file.name, progress)
        _check_md5(actual, file, f"download of {address}", f"nothing was kept ({MIRROR_HINT})")

    if log:
        log(f"download: {remote.dataset} from {address} into {folder}")
    try:
        return atomic_write(Path(folder) / file.name, download_and_check)
    except KeyboardInterrupt:
        if log:
            log(f"download of {file.name} interrupted: the partial file was removed")
        raise


def _stream(address: str, f, label: str, progress: bool) -> str:
    """Copy the body at ``address`` into ``f`` with a progress bar; its MD5 (hex).

    Raises:
        DownloadError: one line saying what failed (nothing is removed here).
    """
    failed = f"download of {address} failed"
    request = urllib.request.Request(address, headers={"User-Agent": USER_AGENT})
    digest = hashlib.md5(usedforsecurity=False)
    received, total = 0, None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                      disable=None if progress else True, leave=False) as bar:
                # read1: what has arrived (up to a chunk), so the bar moves as the bytes come in
                while chunk := response.read1(CHUNK_BYTES):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{failed}: HTTP {exc.code} {_one_line(exc.reason)}; nothing was kept "
                            f"({MIRROR_HINT})") from None
    except urllib.error.URLError as exc:   # refused, unknown host, TLS, a missing file:// path
        raise DownloadError(f"{failed}: {_one_line(exc.reason)}; nothing was kept ({MIRROR_HINT})") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:   # timeout, reset, bad URL, IncompleteRead
        reason = f"{type(exc).__name__}: {_one_line(exc)}" if str(exc) else type(exc).__name__
        raise DownloadError(f"{failed} after {received:,} bytes ({reason}); nothing was kept "
                            f"({MIRROR_HINT})") from None
    if total is not None and received != total:
        # http.client returns an empty read when the server closes early, without raising.
        raise DownloadError(f"{failed}: the transfer stopped after {received:,} of {total:,} bytes; "
                            f"nothing was kept ({MIRROR_HINT})")
    return digest.hexdigest()


def unpack_tar(archive, dest, check: Callable[[Path], bool] | None = None) -> Path:
    """Unpack the folder ``dest.name`` of the tar ``archive`` to ``dest``, whole or not at all.

    The archive is unpacked into a temporary folder beside ``dest``; ``check``
    (given the unpacked folder) must accept it; then it is renamed to ``dest``.

    Raises:
        DownloadError: the archive is unreadable, unsafe, or lacks the folder
            (or ``check`` rejects it); the temporary folder is removed.
    """
    archive, dest = Path(archive), Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:   # Python 3.10 before 3.10.12: no filters; take plain files and folders inside only
                    tar.extractall(tmp, members=_plain_members(tar))
        except (tarfile.TarError, OSError, EOFError) as exc:   # truncated gzip, not a tar, unsafe member
            raise DownloadError(f"{archive} is not a readable archive ({type(exc).__name__}: "
                                f"{_one_line(exc)}); nothing was unpacked") from None
        unpacked = tmp / dest.name
        if not unpacked.is_dir() or (check is not None and not check(unpacked)):
            raise DownloadError(f"{archive} does not hold the expected {dest.name}/ folder; nothing was unpacked")
        os.replace(unpacked, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _plain_members(tar: tarfile.TarFile):
    """The members of ``tar``; a link, a device, an absolute path or a ``..`` raises ``tarfile.TarError``."""
    for member in tar:
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or Path(member.name).is_absolute() or ".." in parts:
            raise tarfile.TarError(f"unsafe member {member.name!r}")
        yield member


def _one_line(message) -> str:
    return " ".join(str(message).split())
