"""An ImageFolder tree on disk: its classes, its image files, their fingerprint, and where to cache.

``ROOT/<class>/<image>``: the sub-folders are the classes, in sorted order
(torchvision's ``ImageFolder`` order, so class indices agree with it), and the
files with an image extension inside each one are its images.

The fingerprint hashes the class list and every file's class, name, size and
modification time: anything that could change a decoded array or a label
changes it, so a cache named by it is reused exactly while the tree is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
CACHE_DIR_NAME = ".npalexnet-cache"


def list_classes(root: Path) -> list[str]:
    """Sorted sub-folder names (torchvision's ImageFolder order, so indices agree)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def list_images(root: Path, classes: list[str]) -> tuple[list[str], numpy.ndarray, str]:
    """Image paths (class by class, names sorted), their class indices (N,) int64, and the fingerprint."""
    paths, labels, digest = [], [], hashlib.sha1()
    digest.update(("\n".join(classes) + "\n\n").encode())
    for index, name in enumerate(classes):
        folder = Path(root) / name
        if not folder.is_dir():
            continue
        entries = sorted((e for e in os.scandir(folder)
                          if e.is_file() and e.name.lower().endswith(EXTENSIONS)), key=lambda e: e.name)
        for e in entries:
            st = e.stat()
            digest.update(f"{name}/{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            paths.append(e.path)
            labels.append(index)
    return paths, numpy.asarray(labels, dtype=numpy.int64), digest.hexdigest()[:16]


def is_imagefolder(root: Path) -> bool:
    """True when ``root`` has class sub-folders holding at least one image."""
    root = Path(root)
    if not root.is_dir():
        return False
    for name in list_classes(root):
        for entry in os.scandir(root / name):
            if entry.is_file() and entry.name.lower().endswith(EXTENSIONS):
                return True
    return False


def default_cache_dir() -> Path:
    """``$NPALEXNET_CACHE``, else the platform's user cache folder for npalexnet.

    That is ``$XDG_CACHE_HOME/npalexnet`` (``~/.cache/npalexnet``) on Linux,
    ``~/Library/Caches/npalexnet`` on macOS and ``%LOCALAPPDATA%\\npalexnet\\Cache``
    on Windows (``platformdirs.user_cache_dir``).
    """
    override = os.environ.get("NPALEXNET_CACHE")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("npalexnet", appauthor=False))


def cache_places(root: Path, cache_dir=None, split_layout: bool = True) -> list[tuple[Path, str]]:
    """Where decoded images are kept, in order of preference, each with a file-name prefix.

    Never inside a class tree: torchvision's ImageFolder would take a cache
    folder there for a class. With ``train/`` and ``test/`` the cache sits
    beside them (``DIR/.npalexnet-cache``); a flat tree, an explicit
    ``cache_dir`` and the fallback for a data folder that is not writable use a
    shared folder (:func:`default_cache_dir`), so the names carry the tree's
    path. A data folder without write bits is left untouched.
    """
    resolved = Path(root).resolve()
    tag = f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}-"
    if cache_dir is not None:
        return [(Path(cache_dir), tag)]
    beside = [(Path(root) / CACHE_DIR_NAME, "")] if split_layout and writable(Path(root)) else []
    return beside + [(default_cache_dir(), tag)]


def writable(folder: Path) -> bool:
    """Writable, and not marked read-only (root may write anywhere; a data folder
    without write bits says it is not meant to be written to)."""
    try:
        return os.access(folder, os.W_OK) and bool(stat.S_IMODE(folder.stat().st_mode) & 0o222)
    except OSError:
        return False
