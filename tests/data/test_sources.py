"""Finding and reading datasets: pickled CIFAR batches, ImageFolder trees (cached), clear errors."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.data import DataError, DataNotFoundError, load_dataset
from npalexnet.data import store as store_module
from npalexnet.data.imagefolder import CACHE_DIR_NAME
from tests.fakedata import CLASSES, fake_images, write_cifar_batches, write_fashionmnist_raw, write_imagefolder


def test_cifar_batches_layout(tmp_path):
    write_cifar_batches(tmp_path, per_batch=4, test=6)
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):
        ds = load_dataset("cifar10", where)
        assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (6, 3, 32, 32)
        assert ds.classes == list(CLASSES)
        images, labels = fake_images(4, seed=0)
        numpy.testing.assert_array_equal(ds.train.images[:4], images.transpose(0, 3, 1, 2))
        numpy.testing.assert_array_equal(ds.train.labels[:4], labels)


def test_default_root_reads_an_existing_download_without_torch(tmp_path):
    write_cifar_batches(tmp_path / "data", per_batch=2, test=2)
    ds = load_dataset("cifar10", root=tmp_path / "data", download=False)
    assert len(ds.train) == 10


def test_truncated_batch_file_names_the_file(tmp_path):
    folder = write_cifar_batches(tmp_path, per_batch=2, test=2)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:50])
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_imagefolder_train_test_is_decoded_once_then_cached(tmp_path, monkeypatch):
    write_imagefolder(tmp_path, per_class=3)
    ds = load_dataset("cifar10", tmp_path, workers=1)
    assert ds.classes == list(CLASSES[:4])
    assert ds.train.images.shape == (12, 3, 32, 32) and ds.train.images.dtype == numpy.uint8
    assert sorted(ds.train.labels.tolist()) == sorted([0, 1, 2, 3] * 3)
    # PNG is lossless: the training images are the generated ones, sorted by class
    images, labels = fake_images(12, 4, seed=0)
    first_of_class0 = images[labels == 0][0].transpose(2, 0, 1)
    numpy.testing.assert_array_equal(ds.train.images[0], first_of_class0)
    cache = tmp_path / CACHE_DIR_NAME                  # beside train/ and test/, not inside
    assert len(list(cache.glob("*-32px-crop-3ch-*.npy"))) == len(list(cache.glob("*.index.npz"))) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(store_module, "_decode_task", no_decoding)
    again = load_dataset("cifar10", tmp_path)
    numpy.testing.assert_array_equal(again.train.images, ds.train.images)
    numpy.testing.assert_array_equal(again.test.labels, ds.test.labels)


def test_changed_tree_is_decoded_again(tmp_path):
    write_imagefolder(tmp_path, per_class=2)
    load_dataset("cifar10", tmp_path)
    next((tmp_path / "train" / "bird").iterdir()).unlink()
    assert len(load_dataset("cifar10", tmp_path).train) == 7


def test_flat_imagefolder_resized_grey_and_separate_cache_dir(tmp_path):
    write_imagefolder(tmp_path / "flowers", per_class=5, classes=("daisy", "rose"), size=20, split=False)
    ds = load_dataset("imagefolder", tmp_path / "flowers", image_size=16, channels=1,
                      cache_dir=tmp_path / "cache", seed=1)
    assert ds.classes == ["daisy", "rose"]
    assert len(ds.train) == 9 and len(ds.test) == 1
    assert ds.train.images.shape[1:] == (1, 16, 16)
    assert list((tmp_path / "cache").glob("flowers-*-all-16px-crop-1ch-*.index.npz"))


def test_unreadable_image_is_skipped_with_a_warning_naming_it(tmp_path):
    write_imagefolder(tmp_path, per_class=2)
    (tmp_path / "train" / "cat" / "0003.5-broken.png").write_bytes(b"not an image")
    lines = []
    ds = load_dataset("cifar10", tmp_path, log=lines.append)
    assert len(ds.train) == 8 and sorted(ds.train.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1 and "skipped 1 unreadable image" in warning[0] and "cat/0003.5-broken.png" in warning[0]
    images, _ = fake_images(8, 4, seed=0)   # the cat images after the skipped file keep their pixels
    numpy.testing.assert_array_equal(ds.train.images[ds.train.labels == 3][1], images[7].transpose(2, 0, 1))


def test_a_tree_with_no_readable_image_is_an_error(tmp_path):
    write_imagefolder(tmp_path, per_class=1)
    for path in (tmp_path / "train").rglob("*.png"):
        path.write_bytes(b"broken")
    with pytest.raises(DataError, match="none of the 4 images"):
        load_dataset("cifar10", tmp_path)


def test_missing_and_empty_directories_say_where_they_looked(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such directory.*--data-dir"):
        load_dataset("cifar10", tmp_path / "missing")
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py.*train/<class>"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataNotFoundError, match="needs --data-dir"):
        load_dataset("imagefolder")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["torchvision-unpacked", "published-gz"])
def test_fashionmnist_raw_files_without_torch(tmp_path, gz):
    raw = write_fashionmnist_raw(tmp_path, train=12, test=6, gz=gz)
    for where in (tmp_path, raw):
        ds = load_dataset("fashionmnist", where)
        assert ds.train.images.shape == (12, 1, 28, 28) and ds.test.images.shape == (6, 1, 28, 28)
        assert ds.in_channels == 1 and len(ds.classes) == 10
        numpy.testing.assert_array_equal(ds.train.images[:, 0], fake_images(12, size=28)[0][..., 0])


def test_fashionmnist_counts_that_disagree(tmp_path):
    raw = write_fashionmnist_raw(tmp_path, train=4, test=2)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x01\x03")   # one label for two images
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte holds 2 images but .*t10k-labels-idx1-ubyte 1 labels"):
        load_dataset("fashionmnist", tmp_path)


def test_torchvision_imagefolder_still_reads_the_tree_after_caching(tmp_path, monkeypatch):
    """No cache folder inside a class tree (torchvision would take it for a class)."""
    datasets = pytest.importorskip("torchvision.datasets")
    monkeypatch.setenv("NPALEXNET_CACHE", str(tmp_path / "user-cache"))
    write_imagefolder(tmp_path / "split", per_class=1)
    write_imagefolder(tmp_path / "flat", per_class=2, split=False)
    load_dataset("cifar10", tmp_path / "split")
    load_dataset("imagefolder", tmp_path / "flat")
    assert datasets.ImageFolder(tmp_path / "split" / "train").classes == list(CLASSES[:4])
    assert datasets.ImageFolder(tmp_path / "flat").classes == list(CLASSES[:4])
    assert len(list((tmp_path / "user-cache").glob("flat-*-all-*.index.npz"))) == 1


def test_read_only_data_folder_is_left_untouched(tmp_path):
    import os

    write_imagefolder(tmp_path / "ro", per_class=1)
    os.chmod(tmp_path / "ro", 0o555)
    try:
        load_dataset("cifar10", tmp_path / "ro")
        assert not (tmp_path / "ro" / CACHE_DIR_NAME).exists()
        assert len(list((tmp_path / "npalexnet-cache").glob("ro-*-t*-32px-crop-3ch-*.index.npz"))) == 2
    finally:
        os.chmod(tmp_path / "ro", 0o755)
