"""A dataset kept as decoded uint8 arrays: ``DIR/train.npz`` and ``DIR/test.npz``.

The layout of the ImageFolder cache (:mod:`.imagefolder`), with fixed names
so it needs no image files beside it: each file holds

* ``images``: (N, C, H, W) uint8, NCHW as the models take it;
* ``labels``: (N,) integer class indices in [0, K);
* ``classes``: (K,) strings, the class names (``train.npz``; optional, else
  ``"0" .. "K-1"``).

It is the quickest form to read (one ``numpy.load`` per split, no decoding)
and the one a subset travels in: ``benchmarks/make_gpu_data.py`` writes
10,000 training and 2,000 test images of CIFAR-10 this way for the GPU
machine, and ``--data-dir`` reads it like any other layout.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy

from .atomic import atomic_savez
from .dataset import Dataset, Split
from .errors import DataError

TRAIN_FILE, TEST_FILE = "train.npz", "test.npz"


def find_arrays_dir(root) -> Path | None:
    """``root`` when it holds ``train.npz`` and ``test.npz``, else None."""
    root = Path(root)
    return root if (root / TRAIN_FILE).is_file() and (root / TEST_FILE).is_file() else None


def _read(path: Path, want_classes: bool):
    try:
        with numpy.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
            classes = [str(c) for c in z["classes"]] if want_classes and "classes" in z.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable array file with 'images' and 'labels' "
                        f"({type(exc).__name__}: {exc})") from exc
    if images.ndim != 4 or images.dtype != numpy.uint8 or labels.shape != images.shape[:1] \
            or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: expected images (N, C, H, W) uint8 and labels (N,) integers, got images "
                        f"{images.shape} {images.dtype} and labels {labels.shape} {labels.dtype}")
    return Split(images, labels), classes


def load_arrays(folder, name: str = "arrays") -> Dataset:
    """The dataset in ``folder/train.npz`` and ``folder/test.npz`` (see the module docstring)."""
    folder = Path(folder)
    train, classes = _read(folder / TRAIN_FILE, want_classes=True)
    test, _ = _read(folder / TEST_FILE, want_classes=False)
    if test.images.shape[1:] != train.images.shape[1:]:
        raise DataError(f"{folder}: test images are {test.images.shape[1:]}, training images "
                        f"{train.images.shape[1:]}")
    if classes is None:
        count = int(max(train.labels.max(initial=-1), test.labels.max(initial=-1))) + 1
        classes = [str(k) for k in range(count)]
    return Dataset(name, train, test, classes, source=str(folder))


def save_arrays(folder, dataset: Dataset) -> Path:
    """Write ``dataset`` as ``folder/train.npz`` and ``folder/test.npz`` (each file whole or not at all)."""
    folder = Path(folder)
    atomic_savez(folder / TRAIN_FILE, {"images": dataset.train.images, "labels": dataset.train.labels,
                                       "classes": numpy.array(dataset.classes, dtype=str)})
    atomic_savez(folder / TEST_FILE, {"images": dataset.test.images, "labels": dataset.test.labels})
    return folder
