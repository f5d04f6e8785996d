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
    """``root/cifar-10-batches-py`` with 5 training batches of ``per_batch`` images and a test batch.

    Each batch is a pickled dict in the official layout: ``b"batch_label"``,
    ``b"labels"``, ``b"data"`` ((N, 3072) uint8 rows, R, G, B planes) and
    ``b"filenames"``; ``batches.meta`` holds ``b"label_names"``.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        images, labels = fake_images(test if name == "test_batch" else per_batch, seed=seed + i)
        entry = {b"batch_label": f"{name} of fake CIFAR-10".encode(), b"labels": labels.tolist(),
                 b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                 b"filenames": [f"{name}_{j}.png".encode() for j in range(len(images))]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072,
                     b"num_cases_per_batch": per_batch}, f)
    return folder


def cifar_archive(per_batch: int = 10, test: int = 10, seed: int = 0) -> bytes:
    """A ``cifar-10-python.tar.gz`` in the official layout (``cifar-10-batches-py/...``), as bytes."""
    import io
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_cifar_batches(tmp, per_batch, test, seed)
        (folder / "readme.html").write_text("<p>fake CIFAR-10 for tests</p>")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    return buffer.getvalue()


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


def fashionmnist_files(train: int = 20, test: int = 10, seed: int = 0) -> dict[str, bytes]:
    """The four uncompressed idx files of a small FashionMNIST, by their (unpacked) names."""
    import struct

    files = {}
    for prefix, n in (("train", train), ("t10k", test)):
        images, labels = fake_images(n, size=28, seed=seed)
        grey = images[..., 0]
        files[f"{prefix}-images-idx3-ubyte"] = struct.pack(">IIII", 0x803, n, 28, 28) + grey.tobytes()
        files[f"{prefix}-labels-idx1-ubyte"] = struct.pack(">II", 0x801, n) + labels.astype(numpy.uint8).tobytes()
    return files


def write_fashionmnist_raw(root, train: int = 20, test: int = 10, seed: int = 0, gz: bool = False) -> Path:
    """``root/FashionMNIST/raw/`` with the four idx files (torchvision's unpacked ones, or the published .gz)."""
    import gzip

    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in fashionmnist_files(train, test, seed).items():
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)
    return raw


def write_jpeg_tree(root, classes: int = 3, train_per_class: int = 4, test_per_class: int = 2, seed: int = 0,
                    min_size=(24, 16), max_size=(64, 48)) -> Path:
    """A small generated ImageFolder tree of JPEGs of varied sizes and aspect ratios, with learnable
    classes (``benchmarks/make_imagefolder.py`` at test sizes): ``root/train/c000/*.jpg``, ``root/test/...``."""
    from benchmarks.make_imagefolder import write_tree

    return write_tree(root, classes, train_per_class, test_per_class, min_size, max_size, seed=seed)


def write_torchvision_alexnet(folder, seed: int = 0):
    """A randomly initialised torchvision AlexNet (1000 classes) saved with ``torch.save`` in ``folder``.

    Returns ``(path, state)``, ``state`` the saved tensors as NumPy arrays. Needs torchvision
    (imported here, so that the rest of this module does not).
    """
    import torch
    import torchvision

    torch.manual_seed(seed)
    state = torchvision.models.alexnet().state_dict()
    path = Path(folder) / "alexnet.pth"
    torch.save(state, path)
    return path, {k: v.numpy() for k, v in state.items()}
