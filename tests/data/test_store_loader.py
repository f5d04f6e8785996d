"""StoreLoader: the batches BatchLoader would give, read from disk ahead of their use; ranks' slices; errors."""

import threading

import numpy
import pytest

from npalexnet.data import BatchLoader, DataError, Preprocess
from npalexnet.data.dataset import Split
from npalexnet.data.paper_augment import PaperAugment
from npalexnet.data.store import StoreSplit, write_store
from npalexnet.data.store_loader import StoreLoader
from tests.fakedata import fake_images


@pytest.fixture
def split_and_store(tmp_path):
    images, labels = fake_images(37, num_classes=5, size=16)
    images = images.transpose(0, 3, 1, 2).copy()
    store = write_store(tmp_path / "s", [images[:20], images[20:]], labels, [f"k{i}" for i in range(5)])
    return Split(images, labels), StoreSplit(store)


@pytest.mark.parametrize("train", [True, False])
def test_the_batches_of_an_in_memory_loader(split_and_store, train):
    memory, disk = split_and_store
    preprocess = Preprocess((0.5,) * 3, (0.25,) * 3, 16, pad=2)
    expected = BatchLoader(memory, 8, preprocess, train=train, seed=4)
    loader = StoreLoader(disk, 8, preprocess, train=train, seed=4)
    assert len(loader) == len(expected) == 5 and loader.num_images == 37
    for epoch in (0, 1):
        got = list(loader.epoch(epoch))
        assert [step for step, _, _ in got] == list(range(5))
        for (step, x, y), (_, ex, ey) in zip(got, expected.epoch(epoch)):
            numpy.testing.assert_array_equal(x, ex)
            numpy.testing.assert_array_equal(y, ey)
            numpy.testing.assert_array_equal(loader.batch_indices(epoch, step)[0],
                                             expected.batch_indices(epoch, step)[0])
    assert loader.timing.images == 37 and loader.timing.elapsed > 0 and 0 <= loader.timing.wait_fraction <= 1


def paper(disk):
    stats = disk.stats()
    return PaperAugment(stats.mean, (1 / 255,) * 3, stats.eigvals, stats.eigvecs, out_size=12, stored=16)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_reads_its_slice_of_the_global_batch(split_and_store, world):
    _, disk = split_and_store
    whole = StoreLoader(disk, 10, paper(disk), train=True, seed=1)
    ranks = [StoreLoader(disk, 10, paper(disk), train=True, seed=1, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 2):
        parts = [list(loader.epoch(epoch)) for loader in ranks]
        for step, x, y in whole.epoch(epoch):
            numpy.testing.assert_array_equal(numpy.concatenate([p[step][1] for p in parts]), x)
            numpy.testing.assert_array_equal(numpy.concatenate([p[step][2] for p in parts]), y)
            assert ranks[0].batch_indices(epoch, step)[1] == len(y)


def test_a_resumed_epoch_gives_the_remaining_batches_and_batch_reads_one(split_and_store):
    _, disk = split_and_store
    loader = StoreLoader(disk, 8, paper(disk), train=True, seed=2)
    full = list(loader.epoch(3))
    rest = list(loader.epoch(3, start=2))
    assert [s for s, _, _ in rest] == [2, 3, 4]
    for (_, x, y), (_, fx, fy) in zip(rest, full[2:]):
        numpy.testing.assert_array_equal(x, fx)
        numpy.testing.assert_array_equal(y, fy)
    x, y = loader.batch(3, 4)
    numpy.testing.assert_array_equal(x, full[4][1])


def test_stopping_in_the_middle_of_an_epoch_stops_the_reader(split_and_store):
    _, disk = split_and_store
    before = threading.active_count()
    loader = StoreLoader(disk, 4, paper(disk), train=True)
    for step, _, _ in loader.epoch(0):
        if step == 1:
            break
    assert threading.active_count() == before


def test_a_store_damaged_during_training_is_a_data_error(split_and_store):
    _, disk = split_and_store
    loader = StoreLoader(disk, 8, paper(disk), train=True)
    with open(disk.store.path, "r+b") as f:
        f.truncate(disk.store.nbytes // 2)
    with pytest.raises(DataError, match="truncated"):
        list(loader.epoch(0))


def test_bad_arguments(split_and_store):
    _, disk = split_and_store
    with pytest.raises(ValueError, match="rank 2"):
        StoreLoader(disk, 4, paper(disk), rank=2, world_size=2)
    with pytest.raises(ValueError, match="depth"):
        StoreLoader(disk, 4, paper(disk), depth=0)
