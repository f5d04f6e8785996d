"""Datasets kept as decoded uint8 arrays (DIR/train.npz + DIR/test.npz): written, found, read, refused."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.data import DataError, Dataset, Split, load_dataset
from npalexnet.data.arrays import find_arrays_dir, load_arrays, save_arrays
from tests.fakedata import CLASSES, fake_images


def small_dataset(train=12, test=6) -> Dataset:
    images, labels = fake_images(train, seed=1)
    test_images, test_labels = fake_images(test, seed=2)
    return Dataset("cifar10", Split(images.transpose(0, 3, 1, 2).copy(), labels),
                   Split(test_images.transpose(0, 3, 1, 2).copy(), test_labels), list(CLASSES))


def test_saved_arrays_are_read_back_by_load_dataset(tmp_path):
    original = small_dataset()
    save_arrays(tmp_path / "subset", original)
    assert sorted(p.name for p in (tmp_path / "subset").iterdir()) == ["test.npz", "train.npz"]
    assert find_arrays_dir(tmp_path / "subset") == tmp_path / "subset" and find_arrays_dir(tmp_path) is None
    loaded = load_dataset("cifar10", tmp_path / "subset")
    assert loaded.classes == list(CLASSES) and loaded.name == "cifar10"
    for ours, theirs in ((loaded.train, original.train), (loaded.test, original.test)):
        numpy.testing.assert_array_equal(ours.images, theirs.images)
        numpy.testing.assert_array_equal(ours.labels, theirs.labels)


def test_class_names_default_to_indices(tmp_path):
    data = small_dataset()
    save_arrays(tmp_path, data)
    with numpy.load(tmp_path / "train.npz") as z:   # a file written by another tool, without names
        numpy.savez(tmp_path / "train.npz", images=z["images"], labels=z["labels"])
    assert load_arrays(tmp_path).classes == [str(k) for k in range(10)]


def test_damaged_or_misshapen_files_name_the_file(tmp_path):
    save_arrays(tmp_path, small_dataset())
    (tmp_path / "test.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="test.npz"):
        load_dataset("cifar10", tmp_path)
    numpy.savez(tmp_path / "test.npz", images=numpy.zeros((2, 3, 32, 32), numpy.float32), labels=numpy.zeros(2, int))
    with pytest.raises(DataError, match=r"test.npz: expected images \(N, C, H, W\) uint8"):
        load_dataset("cifar10", tmp_path)
    numpy.savez(tmp_path / "test.npz", images=numpy.zeros((2, 3, 28, 28), numpy.uint8), labels=numpy.zeros(2, int))
    with pytest.raises(DataError, match="test images are"):
        load_dataset("cifar10", tmp_path)


def test_labels_outside_the_classes_are_refused_when_loaded(tmp_path):
    save_arrays(tmp_path, small_dataset())
    numpy.savez(tmp_path / "test.npz", images=numpy.zeros((2, 3, 32, 32), numpy.uint8), labels=numpy.array([3, 10]))
    with pytest.raises(DataError, match=r"test split .*label 10 is outside \[0, 10\)"):
        load_dataset("cifar10", tmp_path)
