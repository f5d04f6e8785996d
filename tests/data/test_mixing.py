"""Mixup and CutMix: the blend of a batch and its targets, its draws, and the loader that applies them."""

from __future__ import annotations

import math

import numpy
import pytest

from npalexnet import random_streams
from npalexnet.data import BatchLoader, Mixing, Preprocess, Split
from npalexnet.data.mixing import Blend


def _batch(n=6, k=5, size=8, seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((n, 3, size, size)).astype(numpy.float32)
    partner = rng.standard_normal((n, 3, size, size)).astype(numpy.float32)
    return x, rng.integers(0, k, n), partner, rng.integers(0, k, n)


def test_mixup_blends_images_and_one_hot_targets_by_lam():
    x, y, px, py = _batch()
    mixed, t = Mixing(5, mixup_alpha=0.4)(x, y, px, py, Blend("mixup", 0.3, 0.3))
    numpy.testing.assert_allclose(mixed, numpy.float32(0.3) * x + numpy.float32(0.7) * px, rtol=0, atol=0)
    expected = 0.3 * numpy.eye(5)[y] + 0.7 * numpy.eye(5)[py]   # a partner of the same class: weight 1
    assert t.dtype == numpy.float32 and t.shape == (6, 5)
    numpy.testing.assert_allclose(t, expected, rtol=1e-6)
    numpy.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)


def test_cutmix_pastes_the_partners_box_and_weights_the_targets_by_area():
    x, y, px, py = _batch()
    blend = Blend("cutmix", 0.5, 1.0 - 4 * 6 / 64, (1, 5, 2, 8))
    mixed, t = Mixing(5, cutmix_alpha=1.0)(x, y, px, py, blend)
    inside = numpy.zeros((8, 8), bool)
    inside[1:5, 2:8] = True
    numpy.testing.assert_array_equal(mixed[:, :, inside], px[:, :, inside])
    numpy.testing.assert_array_equal(mixed[:, :, ~inside], x[:, :, ~inside])
    numpy.testing.assert_allclose(t, 0.625 * numpy.eye(5)[y] + 0.375 * numpy.eye(5)[py], rtol=1e-6)
    assert (x != mixed).any() and not numpy.shares_memory(x, mixed)   # the batch itself is left as it was


def test_a_cutmix_draw_is_a_box_of_side_sqrt_one_minus_lam_around_its_centre_clipped():
    mixing = Mixing(10, cutmix_alpha=1.0)
    sizes = set()
    for step in range(200):
        blend = mixing.draw(4, 2, step, (32, 32))
        y0, y1, x0, x1 = blend.box
        assert blend.kind == "cutmix" and 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 32
        side = int(32 * math.sqrt(1 - blend.lam)) // 2
        centre = random_streams.uniform(4, 2, numpy.array([step]), random_streams.MIX_BOX_STREAM, (2,))[0]
        cy, cx = int(centre[0] * 32), int(centre[1] * 32)
        assert (y0, y1, x0, x1) == (max(cy - side, 0), min(cy + side, 32), max(cx - side, 0), min(cx + side, 32))
        assert blend.weight == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 1024) and blend.weight >= blend.lam - 1e-12
        sizes.add(y1 - y0)
    assert len(sizes) > 10   # boxes of many sizes, from none to most of the image


def test_draws_are_functions_of_seed_epoch_step_and_both_kinds_take_turns():
    both = Mixing(10, mixup_alpha=0.2, cutmix_alpha=1.0)
    draws = [both.draw(1, 3, step, (32, 32)) for step in range(400)]
    assert draws == [both.draw(1, 3, step, (32, 32)) for step in range(400)]
    assert draws != [both.draw(1, 4, step, (32, 32)) for step in range(400)]
    share = sum(d.kind == "mixup" for d in draws) / 400
    assert 0.4 < share < 0.6   # one of the two per step, with probability 1/2
    lams = numpy.array([d.lam for d in draws if d.kind == "mixup"])
    key = numpy.arange(400)[[d.kind == "mixup" for d in draws]]
    numpy.testing.assert_array_equal(lams, random_streams.beta(1, 3, key, random_streams.MIX_WEIGHT_STREAM, 0.2, 0.2))
    assert {d.kind for d in (Mixing(10, mixup_alpha=1.0).draw(0, 0, s, (8, 8)) for s in range(20))} == {"mixup"}


@pytest.mark.parametrize("kwargs, message", [
    ({"mixup_alpha": -0.1}, r"Mixing: mixup_alpha must be in \[0, 2\] \(0: off\), got -0.1"),
    ({"cutmix_alpha": 3.0}, r"Mixing: cutmix_alpha must be in \[0, 2\] \(0: off\), got 3.0"),
    ({}, "both are 0: nothing to blend"),
])
def test_bad_mixing_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Mixing(10, **kwargs)


def _loader(mixing, rank=0, world_size=1, n=37, batch=9):
    rng = numpy.random.default_rng(0)
    split = Split(rng.integers(0, 256, (n, 3, 8, 8)).astype(numpy.uint8), numpy.arange(n) % 5)
    return BatchLoader(split, batch, Preprocess((0.5,) * 3, (0.25,) * 3, 8, pad=2), "cpu", train=True, seed=3,
                       rank=rank, world_size=world_size, mixing=mixing)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_the_loader_blends_each_image_with_its_keyed_partner_from_the_split(kind):
    mixing = Mixing(5, **{f"{kind}_alpha": 1.0})
    loader, plain = _loader(mixing), _loader(None)
    x, t = loader.batch(2, 1)
    indices, _ = loader.batch_indices(2, 1)
    partners = mixing.partners(3, 2, indices, 37)
    own, labels = plain.batch(2, 1)
    # the partners' own crops and flips of the epoch, as when they are in a batch themselves
    partner_x = plain.preprocess.train(plain.images[partners], 3, 2, partners)
    expected = mixing(own, labels, partner_x, plain.labels[partners], mixing.draw(3, 2, 1, (8, 8)))
    numpy.testing.assert_array_equal(x, expected[0])
    numpy.testing.assert_array_equal(t, expected[1])
    assert t.shape == (9, 5) and numpy.allclose(t.sum(axis=1), 1)
    assert len(set(partners.tolist())) > 4 and (partners != indices).any()


def test_the_loader_blends_the_same_way_on_any_number_of_ranks_and_from_any_step():
    mixing = Mixing(5, mixup_alpha=0.4, cutmix_alpha=1.0)
    one = _loader(mixing)
    whole = {step: (x, t) for step, x, t in one.epoch(1)}
    ranks = [_loader(mixing, rank=r, world_size=3) for r in range(3)]
    for step, (x, t) in whole.items():
        parts = [r.batch(1, step) for r in ranks]
        numpy.testing.assert_array_equal(numpy.concatenate([p[0] for p in parts]), x)
        numpy.testing.assert_array_equal(numpy.concatenate([p[1] for p in parts]), t)
    resumed = {step: (x, t) for step, x, t in _loader(mixing).epoch(1, start=2)}   # a resume mid-epoch
    for step, (x, t) in resumed.items():
        numpy.testing.assert_array_equal(x, whole[step][0])
        numpy.testing.assert_array_equal(t, whole[step][1])


def test_evaluation_loaders_never_blend():
    rng = numpy.random.default_rng(0)
    split = Split(rng.integers(0, 256, (10, 3, 8, 8)).astype(numpy.uint8), numpy.arange(10) % 5)
    loader = BatchLoader(split, 4, Preprocess((0.5,) * 3, (0.25,) * 3, 8, pad=2), "cpu", train=False,
                         mixing=Mixing(5, mixup_alpha=1.0))
    x, y = loader.batch(0, 0)
    assert y.ndim == 1 and numpy.array_equal(x, loader.preprocess.eval(loader.images[:4]))
