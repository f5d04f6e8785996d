"""One CIFAR-10 batch for the study tools.

The study examples need real batches, not a training loop. They come from
the training pipeline's reader, :func:`npalexnet.data.load_dataset` (the
same ``--data-dir`` layouts as ``examples/train_cifar10.py``; never a
download here). Where that cannot be used, a small reader of its own takes
over, for either layout of CIFAR-10:

* an image folder: ``DIR/<split>/<class>/*.png|jpg`` (or ``DIR/<class>/...``),
  classes sorted by name (CIFAR-10's label order is alphabetical);
* the Python pickles: ``DIR/cifar-10-batches-py/data_batch_1`` / ``test_batch``
  (or ``DIR`` being that folder itself).

Images are scaled to [0, 1] and normalised with CIFAR-10's channel mean and
standard deviation, as the training pipeline does.
"""

from __future__ import annotations

import os
import pickle

import numpy

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = numpy.array([0.4914, 0.4822, 0.4465], dtype=numpy.float32)
STD = numpy.array([0.2470, 0.2435, 0.2616], dtype=numpy.float32)
DEFAULT_DIRS = ("data/cifar10", "data")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def normalize(images_uint8):
    """(N, 3, H, W) uint8 -> (N, 3, H, W) float32, channel-normalised."""
    x = images_uint8.astype(numpy.float32) / 255.0
    return numpy.ascontiguousarray((x - MEAN.reshape(1, 3, 1, 1)) / STD.reshape(1, 3, 1, 1))


def denormalize(x):
    """(N, 3, H, W) normalised -> (N, H, W, 3) float in [0, 1], for pictures."""
    x = numpy.asarray(x, dtype=numpy.float32).transpose(0, 2, 3, 1) * STD + MEAN
    return numpy.clip(x, 0.0, 1.0)


def _from_image_folder(root, split, n, rng):
    from PIL import Image
    base = os.path.join(root, split) if os.path.isdir(os.path.join(root, split)) else root
    if not os.path.isdir(base):
        return None
    classes = sorted(d for d in os.listdir(base)
                     if os.path.isdir(os.path.join(base, d)) and not d.startswith("."))
    files = [(os.path.join(base, c, f), i) for i, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(base, c))) if f.lower().endswith(_IMAGE_EXT)]
    if not files:
        return None
    pick = rng.choice(len(files), size=min(n, len(files)), replace=False)
    images = numpy.stack([numpy.asarray(Image.open(files[i][0]).convert("RGB"), dtype=numpy.uint8)
                          for i in pick]).transpose(0, 3, 1, 2)
    labels = numpy.array([files[i][1] for i in pick], dtype=numpy.int64)
    return images, labels, tuple(classes), f"image folder {base}"


def _from_pickles(root, split, n, rng):
    for folder in (os.path.join(root, "cifar-10-batches-py"), root):
        path = os.path.join(folder, "test_batch" if split == "test" else "data_batch_1")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            data = numpy.asarray(d[b"data"], dtype=numpy.uint8).reshape(-1, 3, 32, 32)
            labels = numpy.asarray(d[b"labels"], dtype=numpy.int64)
            pick = rng.choice(len(labels), size=min(n, len(labels)), replace=False)
            return data[pick], labels[pick], CLASSES, f"pickle {path}"
    return None


def _from_pipeline(data_dir, split, n, rng):
    """The training pipeline's reader (``npalexnet.data.load_dataset``, no download), or None."""
    try:
        from ..data import load_dataset
        dataset = load_dataset("cifar10", data_dir, download=False, log=lambda *a, **k: None)
    except Exception:   # noqa: BLE001 (nothing found, or a layout it does not read: use ours)
        return None
    part = dataset.test if split == "test" else dataset.train
    if part.images.shape[1:] != (3, 32, 32):
        return None
    pick = rng.choice(len(part), size=min(n, len(part)), replace=False)
    return part.images[pick], part.labels[pick], tuple(dataset.classes), f"npalexnet.data ({dataset.source})"


def load_batch(data_dir=None, n: int = 16, split: str = "train", seed: int = 0):
    """A random batch of ``n`` CIFAR-10 images, or ``None`` when no data is found.

    Inputs:
        data_dir: the dataset folder; ``None`` tries :data:`DEFAULT_DIRS`.
        n: batch size. split: ``"train"`` or ``"test"``. seed: which images.
    Returns:
        ``(x, y, classes, source)``: x (N, 3, 32, 32) float32 normalised,
        y (N,) int64, the class names, and a description of where it came from.
    """
    rng = numpy.random.default_rng(seed)
    for root in ([data_dir] if data_dir else (None,) + DEFAULT_DIRS):
        if root is not None and not os.path.isdir(root):
            continue
        found = _from_pipeline(root, split, n, rng)
        if found is not None:
            images, labels, classes, source = found
            return normalize(images), labels, classes, source
        if root is None:
            continue
        for reader in (_from_pickles, _from_image_folder):
            found = reader(root, split, n, rng)
            if found is not None:
                images, labels, classes, source = found
                return normalize(images), labels, classes, source
    return None


def random_batch(n: int = 16, seed: int = 0):
    """The fallback: Gaussian images and random labels, same shapes as a CIFAR-10 batch."""
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 32, 32)).astype(numpy.float32)
    y = rng.integers(0, 10, n).astype(numpy.int64)
    return x, y, CLASSES, "random Gaussian batch (no CIFAR-10 data found)"
