"""Seeded stratified validation split and subsets."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.data import Split
from npalexnet.data.split import split_off_validation, stratified_sample, stratified_split


def test_split_partitions_and_keeps_class_shares():
    labels = numpy.repeat(numpy.arange(10), 50)
    keep, held = stratified_split(labels, 0.1, seed=3)
    assert len(held) == 50 and len(keep) == 450
    assert numpy.array_equal(numpy.sort(numpy.concatenate([keep, held])), numpy.arange(500))
    assert numpy.bincount(labels[held]).tolist() == [5] * 10
    again = stratified_split(labels, 0.1, seed=3)
    assert numpy.array_equal(held, again[1])
    assert not numpy.array_equal(held, stratified_split(labels, 0.1, seed=4)[1])


def test_zero_fraction_holds_nothing_out():
    keep, held = stratified_split(numpy.arange(7) % 2, 0.0, seed=0)
    assert len(held) == 0 and len(keep) == 7
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(numpy.arange(7), 1.0, seed=0)


def test_subset_has_every_class():
    labels = numpy.concatenate([numpy.zeros(900, int), numpy.arange(1, 10)])   # nine classes of one image
    chosen = stratified_sample(labels, 20, seed=0)
    assert len(chosen) == 20 and len(set(chosen.tolist())) == 20
    assert set(labels[chosen].tolist()) == set(range(10))
    with pytest.raises(ValueError, match="cannot sample"):
        stratified_sample(labels, 10_000, seed=0)


def test_split_off_validation_takes_the_stratified_split_of_a_dataset_split():
    labels = numpy.repeat(numpy.arange(4), 10)
    images = numpy.arange(40, dtype=numpy.uint8).reshape(40, 1, 1, 1) * numpy.ones((1, 1, 2, 2), numpy.uint8)
    train, val = split_off_validation(Split(images, labels), 0.25, seed=5)
    keep, held = stratified_split(labels, 0.25, seed=5)
    assert numpy.array_equal(val.images[:, 0, 0, 0], held) and numpy.array_equal(val.labels, labels[held])
    assert numpy.array_equal(train.images[:, 0, 0, 0], keep) and numpy.array_equal(train.labels, labels[keep])
    whole, none = split_off_validation(Split(images, labels), 0.0, seed=5)
    assert none is None and len(whole) == 40
