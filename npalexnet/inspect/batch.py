"""One CIFAR-10 batch for the study tools, read by the training pipeline's reader.

The study examples need real batches, not a training loop. They come from
:func:`npalexnet.data.load_dataset` (the same ``--data-dir`` layouts as
``examples/train_cifar10.py``: torchvision's ``cifar-10-batches-py`` pickles
or an image-folder tree; never a download here), normalised as training
normalises them (:func:`npalexnet.data.normalize` with
:data:`~npalexnet.data.CIFAR10_MEAN` and :data:`~npalexnet.data.CIFAR10_STD`),
with the dataset's own class names.

Only when no data is found (:class:`npalexnet.data.DataNotFoundError`) does
:func:`study_batch` fall back to random images, and says so; any other
problem with the data (a corrupted file, a wrong layout) is raised as the
pipeline raises it. An ImageFolder image that does not decode is skipped by
the pipeline with a warning naming it (:mod:`npalexnet.data.store`), which
the study scripts print; a split with no readable image at all is an error.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy

from ..data import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, DataError, DataNotFoundError, load_dataset,
                    normalize)

#: Where :func:`load_batch` looks when no folder is given, in order.
DEFAULT_DIRS = ("data/cifar10", "data")


@dataclass
class Batch:
    """A batch of normalised images.

    Attributes:
        x: (N, 3, 32, 32) float32, normalised with CIFAR-10's channel mean and std.
        y: (N,) int64 class indices.
        classes: the class names, indexed by ``y``.
        source: where the images came from, for the log line.
    """

    x: numpy.ndarray
    y: numpy.ndarray
    classes: tuple
    source: str


def load_batch(data_dir=None, n: int = 16, split: str = "train", seed: int = 0, log=None) -> Batch:
    """A random batch of ``n`` CIFAR-10 images from ``data_dir`` (or the first of :data:`DEFAULT_DIRS` holding it).

    Inputs:
        data_dir: the dataset folder, any layout :func:`npalexnet.data.load_dataset` reads.
        n: batch size (fewer when the split is smaller). split: ``"train"`` or ``"test"``. seed: which images.
        log: gets the lines the pipeline prints while it reads the data (a decode, skipped images); None: silent.
    Returns:
        :class:`Batch`.
    Raises:
        DataNotFoundError: no CIFAR-10 data where it looked (the message says where).
        DataError: data found but unreadable (the pipeline's own errors, passed on).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    roots = [data_dir] if data_dir is not None else [d for d in DEFAULT_DIRS if os.path.isdir(d)]
    looked = []
    for root in roots:
        try:
            dataset = load_dataset("cifar10", root, download=False, log=log or (lambda *a, **k: None))
        except DataNotFoundError as exc:
            looked.append(str(exc))
            continue
        part = dataset.test if split == "test" else dataset.train
        pick = numpy.random.default_rng(seed).choice(len(part), size=min(n, len(part)), replace=False)
        x = normalize(part.images[pick], CIFAR10_MEAN, CIFAR10_STD)
        return Batch(x, part.labels[pick], tuple(dataset.classes), f"npalexnet.data ({dataset.source})")
    if not looked:
        looked.append(f"none of {', '.join(DEFAULT_DIRS)} exists")
    raise DataNotFoundError("no CIFAR-10 data found: " + "; ".join(looked))


def random_batch(n: int = 16, seed: int = 0) -> Batch:
    """The stand-in when there is no data: Gaussian images and random labels, shaped as a CIFAR-10 batch."""
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 32, 32)).astype(numpy.float32)
    y = rng.integers(0, len(CIFAR10_CLASSES), n).astype(numpy.int64)
    return Batch(x, y, tuple(CIFAR10_CLASSES), "random Gaussian batch (no CIFAR-10 data found)")


def study_batch(data_dir=None, n: int = 16, split: str = "train", seed: int = 0,
                log=None) -> tuple[Batch, str | None]:
    """:func:`load_batch`, or :func:`random_batch` when no data is found.

    Returns:
        ``(batch, note)``: ``note`` is None for real data, else one line saying that the
        batch is random, why, and how to point the tool at the data.
    """
    try:
        return load_batch(data_dir, n, split, seed, log), None
    except DataNotFoundError as exc:
        note = f"NOTE: {exc}. Using random Gaussian images with random labels instead."
        return random_batch(n, seed), note


def study_batch_for_script(data_dir=None, n: int = 16, split: str = "train", seed: int = 0, log=print) -> Batch:
    """:func:`study_batch` as the study scripts use it: the note and the pipeline's lines (a decode, the
    images it skipped) logged; bad data (a :class:`~npalexnet.data.DataError`) ends the script with its one
    line on stderr and exit status 2."""
    try:
        batch, note = study_batch(data_dir, n, split, seed, log)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if note:
        log(note)
    return batch
