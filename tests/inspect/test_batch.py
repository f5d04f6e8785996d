"""The study tools' batch: read by npalexnet.data (both CIFAR-10 layouts, its normalisation, its class
names), random images only when no data is found (and said so), every other data problem raised."""

import numpy
import pytest

from npalexnet.data import CIFAR10_MEAN, CIFAR10_STD, DataError, DataNotFoundError, load_dataset, normalize
from npalexnet.inspect.batch import DEFAULT_DIRS, load_batch, random_batch, study_batch
from tests.fakedata import CLASSES, write_cifar_batches, write_imagefolder


def assert_is_the_pipelines_batch(batch, root, split, n, seed):
    """The batch holds the images the training pipeline reads, normalised as training normalises them."""
    dataset = load_dataset("cifar10", root, download=False)
    part = dataset.test if split == "test" else dataset.train
    pick = numpy.random.default_rng(seed).choice(len(part), size=n, replace=False)
    numpy.testing.assert_array_equal(batch.x, normalize(part.images[pick], CIFAR10_MEAN, CIFAR10_STD))
    numpy.testing.assert_array_equal(batch.y, part.labels[pick])
    assert batch.classes == tuple(dataset.classes)
    assert batch.x.dtype == numpy.float32 and batch.x.shape == (n, 3, 32, 32) and batch.y.dtype == numpy.int64


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_pickles(tmp_path, split):
    write_cifar_batches(tmp_path)
    batch = load_batch(str(tmp_path), n=6, split=split, seed=3)
    assert_is_the_pipelines_batch(batch, tmp_path, split, 6, 3)
    assert batch.classes == CLASSES and "cifar-10-batches-py" in batch.source


def test_an_image_folder_with_the_datasets_own_classes(tmp_path):
    write_imagefolder(tmp_path, classes=("cat", "dog"))
    (tmp_path / "train" / ".cache").mkdir()       # a hidden folder is no class
    batch = load_batch(str(tmp_path), n=5)
    assert_is_the_pipelines_batch(batch, tmp_path, "train", 5, 0)
    assert batch.classes == ("cat", "dog")


def test_the_default_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError, match="none of data/cifar10, data exists"):
        load_batch(n=2)
    write_cifar_batches(tmp_path / DEFAULT_DIRS[0])
    assert "data/cifar10" in load_batch(n=2).source


def test_no_data_gives_a_random_batch_and_says_so(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such directory"):
        load_batch(str(tmp_path / "nothing"), 4)
    batch, note = study_batch(str(tmp_path / "nothing"), 3)
    assert note.startswith("NOTE: no CIFAR-10 data found") and "random" in note and "nothing" in note
    assert batch.x.shape == (3, 3, 32, 32) and batch.y.shape == (3,) and len(batch.classes) == 10
    assert "random" in batch.source
    numpy.testing.assert_array_equal(batch.x, random_batch(3).x)
    real, note = study_batch(str(write_cifar_batches(tmp_path / "real").parent), 3)
    assert note is None and real.source.startswith("npalexnet.data")


def test_broken_data_is_reported_not_replaced_by_random_images(tmp_path):
    folder = write_cifar_batches(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3") as raised:
        study_batch(str(tmp_path), 4)
    assert not isinstance(raised.value, DataNotFoundError)
