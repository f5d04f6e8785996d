"""Read torchvision's ``cifar-10-batches-py`` folder directly (no torch needed).

The folder holds ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``,
Python pickles of dicts with ``b"data"`` (N, 3072) uint8 rows (R, G, B planes
of 32x32, i.e. already CHW) and ``b"labels"``; ``batches.meta`` holds
``b"label_names"``. These are the files of the original CIFAR-10
distribution, so unpickling them is as safe as trusting that download.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy

from .dataset import Dataset, Split
from .errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def find_batches_dir(root) -> Path | None:
    """``root`` itself or ``root/cifar-10-batches-py`` when it holds the batch files."""
    root = Path(root)
    for candidate in (root, root / FOLDER):
        if all((candidate / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return candidate
    return None


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
