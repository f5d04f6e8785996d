"""ImageFolder trees (``ROOT/<class>/*.jpg``) decoded once with Pillow and cached.

Layouts accepted:

* ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` (the official split, as
  in ``../shared/data/cifar10``);
* ``DIR/<class>/*`` alone (e.g. the flowers dataset): a seeded, stratified
  ``test_fraction`` of it becomes the test split.

Every image is converted to RGB (or L for ``channels=1``) and resized to
``image_size`` x ``image_size`` (bilinear) as it is decoded, so the split is
one (N, C, S, S) uint8 array. Decoding tens of thousands of small files is
dominated by per-file overhead, so it runs in worker processes, and the
result is cached as an ``.npz`` whose name carries a fingerprint of the file
list (names, sizes, modification times): a second run loads the arrays in
about a second, and a changed tree is decoded again. The cache goes beside
``train/`` and ``test/`` (``DIR/.npalexnet-cache/``), never inside a class
tree, or to ``~/.cache/npalexnet`` (see :func:`cache_places`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy

from .atomic import atomic_savez
from .dataset import Dataset, Split
from .errors import DataError
from .split import stratified_split

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
CACHE_DIR_NAME = ".npalexnet-cache"
#: Below this many files the process pool costs more than it saves.
PARALLEL_MIN_FILES = 2000


def list_classes(root: Path) -> list[str]:
    """Sorted sub-folder names (torchvision's ImageFolder order, so indices agree)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def list_images(root: Path, classes: list[str]) -> tuple[list[str], numpy.ndarray, str]:
    """Image paths, their class indices, and a fingerprint of (name, size, mtime) of each."""
    paths, labels, digest = [], [], hashlib.sha1()
    for index, name in enumerate(classes):
        folder = root / name
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
    if not root.is_dir():
        return False
    for name in list_classes(root):
        for entry in os.scandir(root / name):
            if entry.is_file() and entry.name.lower().endswith(EXTENSIONS):
                return True
    return False


def decode_image(path: str, image_size: int, channels: int = 3) -> numpy.ndarray:
    """One file -> (C, S, S) uint8 (RGB or grey), resized bilinearly when needed."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.BILINEAR)
            array = numpy.asarray(img, dtype=numpy.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _decode_chunk(args) -> numpy.ndarray:
    paths, image_size, channels = args
    out = numpy.empty((len(paths), channels, image_size, image_size), dtype=numpy.uint8)
    for i, p in enumerate(paths):
        out[i] = decode_image(p, image_size, channels)
    return out


def decode_images(paths: list[str], image_size: int, channels: int = 3, workers: int | None = None) -> numpy.ndarray:
    """All ``paths`` -> (N, C, S, S) uint8, in ``workers`` processes (default: every core)."""
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1 or len(paths) < PARALLEL_MIN_FILES:
        return _decode_chunk((paths, image_size, channels))
    size = max(256, len(paths) // (workers * 8))   # a few chunks per worker balances the load
    chunks = [(paths[i:i + size], image_size, channels) for i in range(0, len(paths), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(_decode_chunk, chunks))
    return numpy.concatenate(parts) if parts else numpy.empty((0, channels, image_size, image_size), numpy.uint8)


def cache_places(root: Path, cache_dir=None, split_layout: bool = True) -> list[tuple[Path, str]]:
    """Where decoded arrays are cached, in order of preference, each with a file-name prefix.

    Never inside a class tree: torchvision's ImageFolder would take a cache
    folder there for a class. With ``train/`` and ``test/`` the cache sits
    beside them (``DIR/.npalexnet-cache``); a flat tree, an explicit
    ``cache_dir`` and the fallback for read-only data use a shared folder, so
    the names carry the tree's path. A read-only data folder (no write bits)
    is left untouched.
    """
    resolved = root.resolve()
    tag = f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}-"
    if cache_dir is not None:
        return [(Path(cache_dir), tag)]
    beside = [(root / CACHE_DIR_NAME, "")] if split_layout and _writable(root) else []
    return beside + [(default_cache_dir(), tag)]


def _writable(folder: Path) -> bool:
    """Writable, and not marked read-only (root may write anywhere; a data folder
    without write bits says it is not meant to be written to)."""
    try:
        return os.access(folder, os.W_OK) and bool(stat.S_IMODE(folder.stat().st_mode) & 0o222)
    except OSError:
        return False


def load_split(folder: Path, classes: list[str], split: str, image_size: int, channels: int = 3,
               places: list[tuple[Path, str]] = (), workers: int | None = None, log=None) -> Split:
    """One ImageFolder split (``folder/<class>/*``) as a :class:`Split`, from the cache when it is current.

    ``places`` (from :func:`cache_places`) are tried in order, for reading and
    for writing (a read-only data folder falls through to the next one).
    """
    paths, labels, fingerprint = list_images(folder, classes)
    if not paths:
        raise DataError(f"no images ({', '.join(EXTENSIONS)}) under {folder}/<class>/")
    name = f"{split}-{image_size}px-{channels}ch-{fingerprint}.npz"
    candidates = [base / f"{prefix}{name}" for base, prefix in places]
    for path in candidates:
        if path.is_file():
            try:
                with numpy.load(path, allow_pickle=False) as z:
                    images, cached_labels = z["images"], z["labels"]
                if images.shape[0] == len(paths) and numpy.array_equal(cached_labels, labels):
                    return Split(images, labels)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                continue   # a damaged cache is only a cache: decode again
    start = time.perf_counter()
    images = decode_images(paths, image_size, channels, workers)
    if log:
        log(f"decoded {len(paths)} images of {folder} in {time.perf_counter() - start:.1f} s")
    for path in candidates:
        try:
            atomic_savez(path, {"images": images, "labels": labels})
            if log:
                log(f"cached them in {path}")
            break
        except OSError:   # read-only data folder: try the next place
            continue
    return Split(images, labels)


def default_cache_dir() -> Path:
    """``$NPALEXNET_CACHE`` or ``~/.cache/npalexnet``."""
    return Path(os.environ.get("NPALEXNET_CACHE") or Path.home() / ".cache" / "npalexnet")


def load_imagefolder(root, image_size: int, channels: int = 3, *, name: str = "imagefolder",
                     test_fraction: float = 0.1, seed: int = 0, cache_dir=None,
                     workers: int | None = None, log=None) -> Dataset:
    """An ImageFolder tree (with or without ``train/`` and ``test/``) as a :class:`Dataset`."""
    root = Path(root)
    if is_imagefolder(root / "train"):
        classes = list_classes(root / "train")
        places = cache_places(root, cache_dir, split_layout=True)
        train = load_split(root / "train", classes, "train", image_size, channels, places, workers, log)
        if not is_imagefolder(root / "test"):
            raise DataError(f"{root}/train/ has class folders but {root}/test/ has none: add the test "
                            f"split, or put the class folders directly under {root}")
        test_classes = list_classes(root / "test")
        if not set(test_classes) <= set(classes):
            raise DataError(f"{root}/test/ has classes missing from {root}/train/: "
                            f"{sorted(set(test_classes) - set(classes))}")
        test = load_split(root / "test", classes, "test", image_size, channels, places, workers, log)
    else:
        classes = list_classes(root)
        places = cache_places(root, cache_dir, split_layout=False)
        everything = load_split(root, classes, "all", image_size, channels, places, workers, log)
        train_idx, test_idx = stratified_split(everything.labels, test_fraction, seed)
        train, test = everything.take(train_idx), everything.take(test_idx)
    return Dataset(name, train, test, classes, source=str(root))
