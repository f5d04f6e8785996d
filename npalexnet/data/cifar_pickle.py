"""CIFAR-10's python version: download the official archive, read its ``cifar-10-batches-py`` folder.

The folder (the one torchvision's download also leaves) holds ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``,
Python pickles of dicts with ``b"data"`` (N, 3072) uint8 rows (R, G, B planes
of 32x32, i.e. already CHW) and ``b"labels"``; ``batches.meta`` holds
``b"label_names"``. These are the files of the original CIFAR-10
distribution, so unpickling them is as safe as trusting that download (its
MD5 is checked against the published one before it is unpacked).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy

from .dataset import Dataset, Split
from .download import Remote, RemoteFile, fetch, unpack_tar, verify
from .errors import DataError, DataNotFoundError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ARCHIVE = RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
REMOTE = Remote("CIFAR-10", "https://www.cs.toronto.edu/~kriz/", (ARCHIVE,))
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def find_batches_dir(root) -> Path | None:
    """``root`` itself or ``root/cifar-10-batches-py`` when it holds the batch files."""
    root = Path(root)
    for candidate in (root, root / FOLDER):
        if all((candidate / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return candidate
    return None


def download_cifar10(root, url: str | None = None, *, log=print, progress: bool = True) -> Path:
    """``root/cifar-10-batches-py`` unpacked from the official archive (MD5-checked); the folder.

    An archive already in ``root`` (``cifar-10-python.tar.gz``, e.g. fetched by
    hand) is checked and unpacked without the network and kept; a downloaded
    one is removed once unpacked. ``url`` is a mirror (see
    :func:`npalexnet.data.download.source_url`).

    Raises:
        DownloadError: the download or the unpacking failed (nothing kept).
        DataNotFoundError: an incomplete ``cifar-10-batches-py`` is in the way.
    """
    root = Path(root)
    dest = root / FOLDER
    if dest.exists():   # e.g. an interrupted unpacking by another tool: not ours to delete
        raise DataNotFoundError(f"{dest} is incomplete (it needs {TRAIN_FILES[0]}..{TRAIN_FILES[-1]} and "
                                f"{TEST_FILE}): remove it to download CIFAR-10 again")
    archive = root / ARCHIVE.name
    downloaded = not archive.is_file()
    try:
        if downloaded:
            fetch(REMOTE, ARCHIVE, root, url, log=log, progress=progress)
        else:
            verify(archive, ARCHIVE)
        if log:
            log(f"unpacking {archive}")
        return unpack_tar(archive, dest, check=lambda folder: find_batches_dir(folder) == folder)
    finally:
        if downloaded:   # whole or not, the archive we fetched is not kept: the folder is the copy
            archive.unlink(missing_ok=True)


def _read_batch(path: Path) -> tuple[numpy.ndarray, numpy.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
        data = numpy.asarray(entry[b"data"], dtype=numpy.uint8)
        labels = numpy.asarray(entry.get(b"labels", entry.get(b"fine_labels")), dtype=numpy.int64)
        return data.reshape(-1, 3, 32, 32), labels
    except Exception as exc:   # truncated pickle, wrong file: say which one
        raise DataError(f"{path} is not a readable CIFAR-10 batch file ({type(exc).__name__}: {exc})") from exc


def load_cifar_batches(directory) -> Dataset:
    """The 50,000 training and 10,000 test images of a ``cifar-10-batches-py`` folder."""
    directory = Path(directory)
    parts = [_read_batch(directory / name) for name in TRAIN_FILES]
    train = Split(numpy.concatenate([p[0] for p in parts]), numpy.concatenate([p[1] for p in parts]))
    test = Split(*_read_batch(directory / TEST_FILE))
    classes = list(CLASSES)
    if (directory / META_FILE).is_file():
        try:
            with open(directory / META_FILE, "rb") as f:
                classes = [c.decode() for c in pickle.load(f, encoding="bytes")[b"label_names"]]
        except (OSError, EOFError, KeyError, AttributeError, UnicodeDecodeError, pickle.UnpicklingError):
            # the names are cosmetic: fall back to the official ones
            classes = list(CLASSES)
    return Dataset("cifar10", train, test, classes, source=str(directory))
