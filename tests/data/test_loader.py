"""Batches in an order derived from (seed, epoch), augmentation from (seed, epoch, step)."""

from __future__ import annotations

import numpy

from npalexnet.data import BatchLoader, Preprocess, Split


def _loader(train=True, seed=0, n=37, batch=8):
    rng = numpy.random.default_rng(0)
    split = Split(rng.integers(0, 256, (n, 3, 8, 8)).astype(numpy.uint8), numpy.arange(n) % 5)
    return BatchLoader(split, batch, Preprocess((0.5,) * 3, (0.25,) * 3, 8, pad=2), "cpu", train=train, seed=seed)


def test_every_image_once_per_epoch():
    loader = _loader()
    assert len(loader) == 5
    order = loader.order(3)
    assert sorted(order.tolist()) == list(range(37))
    labels = numpy.concatenate([y for _, _, y in loader.epoch(3)])
    numpy.testing.assert_array_equal(labels, loader.labels[order])


def test_order_and_augmentation_are_functions_of_seed_epoch_step():
    a, b = _loader(), _loader()
    assert numpy.array_equal(a.order(2), b.order(2))
    assert not numpy.array_equal(a.order(2), a.order(3))
    assert not numpy.array_equal(a.order(2), _loader(seed=1).order(2))
    # starting in the middle of an epoch gives the batches of a full pass (what resume relies on)
    full = {step: x for step, x, _ in a.epoch(4)}
    for step, x, _ in b.epoch(4, start=3):
        numpy.testing.assert_array_equal(x, full[step])


def test_evaluation_order_is_fixed_and_unaugmented():
    loader = _loader(train=False)
    numpy.testing.assert_array_equal(loader.order(0), numpy.arange(37))
    x0 = next(loader.epoch(0))[1]
    numpy.testing.assert_array_equal(x0, loader.preprocess.eval(loader.images[:8]))


def test_the_device_gets_the_same_augmented_batches(xp):
    """Random numbers are drawn on the host, so NumPy and CuPy batches agree."""
    from npalexnet import asnumpy

    cpu = _loader()
    here = BatchLoader(Split(asnumpy(cpu.images), asnumpy(cpu.labels)), 8, cpu.preprocess,
                       "cpu" if xp is numpy else "cuda", train=True, seed=0)
    x, y = here.batch(1, 2)
    assert isinstance(x, xp.ndarray) and isinstance(y, xp.ndarray)
    x_cpu, y_cpu = cpu.batch(1, 2)
    numpy.testing.assert_allclose(asnumpy(x), x_cpu, rtol=1e-6, atol=1e-6)
    numpy.testing.assert_array_equal(asnumpy(y), y_cpu)
