"""FashionMNIST: download the four published gz files, read their idx arrays with NumPy (no torch).

Layout: torchvision's, so a copy it downloaded is read as it is:
``root/FashionMNIST/raw/`` with ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each either plain or gzipped (``.gz``, as published).

The idx format (from the MNIST page): two zero bytes, a type byte (``0x08``:
unsigned bytes, the only type these files use), the number of dimensions D,
D big-endian uint32 sizes, then the values in C order. Images are
(N, 28, 28) uint8 (0 = background), labels (N,) uint8 in [0, 10).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy

from .dataset import Dataset, Split, nhwc_to_nchw
from .download import Remote, RemoteFile, fetch
from .errors import DataError

FOLDER = "FashionMNIST"
TRAIN_IMAGES = RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d")
TRAIN_LABELS = RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")
TEST_IMAGES = RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79")
TEST_LABELS = RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")
REMOTE = Remote("FashionMNIST", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS))
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
UNSIGNED_BYTE = 0x08


def _local(folder: Path, file: RemoteFile) -> Path | None:
    """``folder``'s copy of ``file``: the unpacked one if there, else the gz; None if neither."""
    for path in (folder / file.name.removesuffix(".gz"), folder / file.name):
        if path.is_file():
            return path
    return None


def find_raw_dir(root) -> Path | None:
    """``root``, ``root/raw`` or ``root/FashionMNIST/raw`` when it holds the four files."""
    root = Path(root)
    for candidate in (root, root / "raw", root / FOLDER / "raw"):
        if all(_local(candidate, file) is not None for file in REMOTE.files):
            return candidate
    return None


def download_fashionmnist(root, url: str | None = None, *, log=print, progress: bool = True) -> Path:
    """``root/FashionMNIST/raw`` with the four published gz files (each MD5-checked); the folder.

    Only the files not already there are fetched. ``url`` is a mirror (see
    :func:`npalexnet.data.download.source_url`).

    Raises:
        DownloadError: a download failed (nothing of that file kept).
    """
    raw = Path(root) / FOLDER / "raw"
    for file in REMOTE.files:
        if _local(raw, file) is None:
            fetch(REMOTE, file, raw, url, log=log, progress=progress)
    return raw


def read_idx(path, ndim: int) -> numpy.ndarray:
    """The uint8 array of an idx file (plain or gzipped) with ``ndim`` dimensions.

    Raises:
        DataError: the file is unreadable, truncated, or not an idx file of
            unsigned bytes with ``ndim`` dimensions; the message names it.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
        header = 4 + 4 * ndim
        if len(data) < header or data[:2] != b"\0\0" or data[2] != UNSIGNED_BYTE or data[3] != ndim:
            raise ValueError(f"the header is not that of a {ndim}-dimensional idx file of unsigned bytes")
        shape = struct.unpack(f">{ndim}I", data[4:header])
        if len(data) - header != math.prod(shape):
            raise ValueError(f"{len(data) - header} values for the announced shape {shape}")
        return numpy.frombuffer(data, numpy.uint8, offset=header).reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error) as exc:   # truncated gzip, wrong file
        raise DataError(f"{path} is not a readable idx file ({type(exc).__name__}: {exc})") from exc


def _read_split(folder: Path, images: RemoteFile, labels: RemoteFile) -> Split:
    images_path, labels_path = _local(folder, images), _local(folder, labels)
    pixels, targets = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(pixels) != len(targets):
        raise DataError(f"{images_path} holds {len(pixels)} images but {labels_path} {len(targets)} labels")
    if targets.size and targets.max() >= len(CLASSES):
        raise DataError(f"{labels_path}: label {targets.max()} is outside 0..{len(CLASSES) - 1}")
    return Split(nhwc_to_nchw(pixels), targets.astype(numpy.int64))


def load_fashionmnist(folder) -> Dataset:
    """The 60,000 training and 10,000 test images of a folder found by :func:`find_raw_dir`."""
    folder = Path(folder)
    train = _read_split(folder, TRAIN_IMAGES, TRAIN_LABELS)
    test = _read_split(folder, TEST_IMAGES, TEST_LABELS)
    return Dataset("fashionmnist", train, test, list(CLASSES), source=str(folder))
