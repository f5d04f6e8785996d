"""Tiny datasets on disk, in the layouts the data pipeline reads (for tests/data and tests/train).

Images carry a class-dependent colour so a model can learn something from a
handful of them; everything is seeded.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def fake_images(n: int, num_classes: int = 10, size: int = 32, seed: int = 0):
    """(n, size, size, 3) uint8 images and (n,) labels cycling through the classes."""
    rng = numpy.random.default_rng(seed)
    labels = numpy.arange(n) % num_classes
    base = (labels[:, None] * numpy.array([25, 60, 95]) % 256)[:, None, None, :]
    noise = rng.integers(0, 60, size=(n, size, size, 3))
    return numpy.clip(base + noise, 0, 255).astype(numpy.uint8), labels.astype(numpy.int64)


def write_cifar_batches(root, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with 5 training batches of ``per_batch`` images and a test batch."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        images, labels = fake_images(test if name == "test_batch" else per_batch, seed=seed + i)
        entry = {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), b"labels": labels.tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, f)
    return folder


def write_imagefolder(root, per_class: int = 3, classes=CLASSES[:4], size: int = 32, split: bool = True,
                      seed: int = 0) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.jpg`` (or ``root/<class>/*`` without ``split``)."""
    from PIL import Image

    root = Path(root)
    parts = {"train": ".png", "test": ".jpg"} if split else {"": ".png"}
    for offset, (part, ext) in enumerate(parts.items()):
        images, labels = fake_images(per_class * len(classes), len(classes), size, seed + offset)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / part / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:04d}{ext}")
    return root


def write_fashionmnist_raw(root, train: int = 20, test: int = 10, seed: int = 0) -> Path:
    """``root/FashionMNIST/raw/`` with the four uncompressed idx files torchvision reads."""
    import struct

    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", train), ("t10k", test)):
        images, labels = fake_images(n, size=28, seed=seed)
        grey = images[..., 0]
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + grey.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n)
                                                          + labels.astype(numpy.uint8).tobytes())
    return raw


def write_jpeg_tree(root, classes: int = 3, train_per_class: int = 4, test_per_class: int = 2, seed: int = 0,
                    min_size=(24, 16), max_size=(64, 48)) -> Path:
    """A small generated ImageFolder tree of JPEGs of varied sizes and aspect ratios, with learnable
    classes (``benchmarks/make_imagefolder.py`` at test sizes): ``root/train/c000/*.jpg``, ``root/test/...``."""
    from benchmarks.make_imagefolder import write_tree

    return write_tree(root, classes, train_per_class, test_per_class, min_size, max_size, seed=seed)
