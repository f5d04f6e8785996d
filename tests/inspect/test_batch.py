"""One CIFAR-10 batch: image folders (hidden folders skipped), the pickles, the random fallback."""

import pickle

import numpy
from PIL import Image

from npalexnet.inspect import batch as batch_mod
from npalexnet.inspect.batch import CLASSES, denormalize, load_batch, normalize, random_batch


def write_folder(root, classes=("cat", "dog"), per_class=3):
    rng = numpy.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=numpy.uint8)).save(
                    root / split / c / f"{i}.png")
    (root / "train" / ".cache").mkdir()     # a hidden folder is no class


def test_image_folder_reader(tmp_path):
    write_folder(tmp_path)
    found = batch_mod._from_image_folder(str(tmp_path), "train", 4, numpy.random.default_rng(0))
    images, labels, classes, source = found
    assert images.shape == (4, 3, 32, 32) and images.dtype == numpy.uint8
    assert classes == ("cat", "dog") and set(labels) <= {0, 1} and "image folder" in source


def test_load_batch_from_an_image_folder(tmp_path):
    write_folder(tmp_path)
    x, y, classes, _ = load_batch(str(tmp_path), n=5)
    assert x.shape == (5, 3, 32, 32) and x.dtype == numpy.float32 and y.dtype == numpy.int64
    assert list(classes) == ["cat", "dog"]


def test_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = numpy.arange(6 * 3072, dtype=numpy.int64).reshape(6, 3072) % 256
    for name in ["data_batch_1", "test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data.astype(numpy.uint8), b"labels": [0, 1, 2, 3, 4, 5]}, f)
    images, labels, classes, source = batch_mod._from_pickles(str(tmp_path), "test", 6, numpy.random.default_rng(0))
    assert images.shape == (6, 3, 32, 32) and classes == CLASSES and "test_batch" in source
    order = numpy.argsort(labels)
    numpy.testing.assert_array_equal(images[order].reshape(6, -1), data)


def test_missing_data_and_random_fallback(tmp_path):
    assert load_batch(str(tmp_path / "nothing"), 4) is None
    x, y, classes, source = random_batch(3)
    assert y.shape == (3,) and x.shape == (3, 3, 32, 32) and len(classes) == 10 and "random" in source


def test_normalize_round_trip():
    images = numpy.random.default_rng(0).integers(0, 256, (2, 3, 4, 4), dtype=numpy.uint8)
    back = denormalize(normalize(images))
    numpy.testing.assert_allclose(back, images.transpose(0, 2, 3, 1) / 255.0, atol=1e-6)
