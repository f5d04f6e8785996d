"""The in-memory dataset: whole splits as uint8 arrays.

Notation: N images, C channels (3 colour, 1 grey), H x W pixels, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .errors import DataError


@dataclass
class Split:
    """One split held as two arrays.

    Attributes:
        images: (N, C, H, W) uint8, NCHW as the models take it.
        labels: (N,) int64 class indices in [0, K).
    """

    images: numpy.ndarray
    labels: numpy.ndarray

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != numpy.uint8:
            raise ValueError(f"Split: images must be (N, C, H, W) uint8, got {self.images.shape} "
                             f"{self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"Split: {self.images.shape[0]} images but labels of shape {self.labels.shape}")
        self.labels = numpy.asarray(self.labels, dtype=numpy.int64)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, indices) -> Split:
        """The images at ``indices`` (a copy)."""
        indices = numpy.asarray(indices)
        return Split(self.images[indices], self.labels[indices])


@dataclass
class Dataset:
    """A training split, the official test split, and the class names.

    ``source`` says where the arrays came from (a path or a torchvision name),
    for the log line and the error messages. Every label must index a class
    (a :class:`~npalexnet.data.DataError` otherwise).
    """

    name: str
    train: Split
    test: Split
    classes: list[str]
    source: str = ""

    def __post_init__(self):
        # Checked once here, on the host, so that a training step needs no per-batch check of its
        # labels (on a GPU, each such check is a device-to-host synchronisation).
        for which, split in (("training", self.train), ("test", self.test)):
            bad = (split.labels < 0) | (split.labels >= len(self.classes))
            if bad.any():
                raise DataError(f"{self.name} {which} split ({self.source or 'in memory'}): label "
                                f"{int(split.labels[bad][0])} is outside [0, {len(self.classes)}), "
                                f"the {len(self.classes)} classes {_preview(self.classes)}")

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[2])


def nhwc_to_nchw(images) -> numpy.ndarray:
    """(N, H, W, C) or (N, H, W) uint8 -> contiguous (N, C, H, W) uint8."""
    images = numpy.asarray(images, dtype=numpy.uint8)
    if images.ndim == 3:
        images = images[:, :, :, None]
    return numpy.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _preview(names, count: int = 4) -> str:
    """The first few class names, for messages."""
    shown = ", ".join(str(n) for n in names[:count])
    return f"({shown}{', ...' if len(names) > count else ''})"
