"""Dropout: inverted scaling, eval identity, mask reuse in backward, seeding."""

import numpy
import pytest

import npalexnet
from npalexnet import nn


def test_dropout_train_scales_kept_units_and_zeros_the_rest(xp):
    drop = nn.Dropout(0.25)
    x = xp.ones((200, 50), dtype=xp.float32)
    y = drop(x)
    kept = y != 0
    assert float(y[kept].min()) == pytest.approx(1 / 0.75)
    assert float(y[kept].max()) == pytest.approx(1 / 0.75)
    assert 0.72 < float(kept.mean()) < 0.78           # 10,000 draws: 0.75 +- 4 sigma


def test_dropout_backward_uses_forward_mask(xp):
    drop = nn.Dropout(0.5)
    x = xp.asarray(numpy.random.default_rng(0).standard_normal((4, 30)))
    g = xp.asarray(numpy.random.default_rng(1).standard_normal((4, 30)))
    y = drop(x)
    dx = drop.backward(g)
    mask = y != 0
    numpy.testing.assert_allclose(npalexnet.asnumpy(dx), npalexnet.asnumpy(g * mask * 2.0), rtol=1e-12)


def test_dropout_eval_is_identity_and_p0_is_identity():
    x = numpy.random.default_rng(0).standard_normal((3, 4))
    drop = nn.Dropout(0.5).eval()
    numpy.testing.assert_array_equal(drop(x), x)
    numpy.testing.assert_array_equal(drop.backward(x), x)
    numpy.testing.assert_array_equal(nn.Dropout(0.0)(x), x)


def test_dropout_p1_zeros_everything():
    x = numpy.ones((3, 4))
    drop = nn.Dropout(1.0)
    assert not drop(x).any()
    assert not drop.backward(x).any()


def test_dropout_is_reproducible_under_manual_seed_and_seed_argument():
    x = numpy.ones((10, 10), dtype=numpy.float32)
    npalexnet.manual_seed(5)
    a = nn.Dropout(0.5)(x)
    npalexnet.manual_seed(5)
    b = nn.Dropout(0.5)(x)
    numpy.testing.assert_array_equal(a, b)
    numpy.testing.assert_array_equal(nn.Dropout(0.5, seed=3)(x), nn.Dropout(0.5, seed=3)(x))


def test_dropout_rejects_bad_probability_and_backward_first():
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Dropout(0.5).backward(numpy.ones(3))
