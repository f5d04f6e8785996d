"""The one shuffle, its batches, and each rank's slice of a global batch."""

import numpy
import pytest

from npalexnet.data.sampling import epoch_order, global_batches, local_slice, shard_bounds, shard_counts


@pytest.mark.parametrize("count,size", [(7, 2), (8, 2), (1, 3), (0, 2), (128, 3), (5, 5)])
def test_slices_cover_the_batch_in_order(count, size):
    batch = numpy.arange(100, 100 + count)
    parts = [local_slice(batch, r, size) for r in range(size)]
    numpy.testing.assert_array_equal(numpy.concatenate(parts), batch)
    counts = shard_counts(count, size)
    assert [len(p) for p in parts] == counts and max(counts) - min(counts) <= 1
    assert counts == sorted(counts, reverse=True)   # rank 0 never has fewer


def test_shard_bounds_rejects_bad_ranks():
    assert shard_bounds(7, 1, 2) == (4, 7)
    with pytest.raises(ValueError):
        shard_bounds(7, 2, 2)


def test_every_rank_draws_the_same_permutation_and_batches():
    a, b = epoch_order(50, 3, 1), epoch_order(50, 3, 1)
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(a, epoch_order(50, 3, 2))
    batches = global_batches(50, 16, 3, 1)
    assert [len(x) for x in batches] == [16, 16, 16, 2]
    numpy.testing.assert_array_equal(numpy.concatenate(batches), a)
    assert [len(x) for x in global_batches(50, 16, 3, 1, drop_last=True)] == [16, 16, 16]


def test_the_order_is_a_permutation_from_the_library_random_scheme():
    from npalexnet import random_streams
    order = epoch_order(1000, 7, 3)
    numpy.testing.assert_array_equal(numpy.sort(order), numpy.arange(1000))
    numpy.testing.assert_array_equal(order, random_streams.permutation(7, 3, 1000))
    assert not numpy.array_equal(order, epoch_order(1000, 8, 3))
    assert epoch_order(0, 7, 3).shape == (0,)


def test_the_readme_recipe_sees_the_batches_of_the_training_program():
    """data.global_batches (the README's own loop) and BatchLoader (the training program) cut the same
    batches from the same shuffle."""
    from npalexnet.data import BatchLoader, Preprocess, Split
    split = Split(numpy.zeros((23, 3, 4, 4), numpy.uint8), numpy.arange(23) % 3)
    loader = BatchLoader(split, 5, Preprocess((0.5,) * 3, (0.25,) * 3, 4), train=True, seed=11)
    for epoch in (0, 3):
        batches = global_batches(23, 5, 11, epoch)
        assert len(batches) == len(loader)
        for step, batch in enumerate(batches):
            numpy.testing.assert_array_equal(loader.batch_indices(epoch, step)[0], batch)
