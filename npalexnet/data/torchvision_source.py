"""CIFAR-10 and FashionMNIST through torchvision (the tutorials' way, with download)."""

from __future__ import annotations

from pathlib import Path

import numpy

from .dataset import Dataset, Split, nhwc_to_nchw
from .errors import DataNotFoundError

TORCHVISION_CLASSES = {"cifar10": "CIFAR10", "fashionmnist": "FashionMNIST"}


def load_torchvision(name: str, root, download: bool = True) -> Dataset:
    """``torchvision.datasets.<name>(root, train=True/False, download=download)`` as arrays.

    Raises:
        DataNotFoundError: torchvision is missing, or the files are absent and
            the download failed (no internet); the message says where it looked.
    """
    root = Path(root)
    try:
        import torchvision
    except ImportError as exc:
        raise DataNotFoundError(f"no {name} data in {root} and torchvision is not installed to download "
                                "it (pip install torchvision)") from exc
    cls = getattr(torchvision.datasets, TORCHVISION_CLASSES[name])
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except Exception as exc:   # URLError, RuntimeError("Dataset not found"), checksum errors
        raise DataNotFoundError(f"no {name} data in {root.resolve()} and the download failed "
                                f"({type(exc).__name__}: {exc})") from exc

    def to_split(ds) -> Split:
        data = ds.data.numpy() if hasattr(ds.data, "numpy") else numpy.asarray(ds.data)
        targets = ds.targets.numpy() if hasattr(ds.targets, "numpy") else numpy.asarray(ds.targets)
        return Split(nhwc_to_nchw(data), numpy.asarray(targets, dtype=numpy.int64))

    return Dataset(name, to_split(train), to_split(test), list(train.classes), source=str(root))
