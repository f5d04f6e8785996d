"""random_streams: the counter-based generator and the per-batch sample keys."""

import numpy
import pytest

import npalexnet
from npalexnet import nn, random_streams


def test_same_keys_give_the_same_numbers(xp):
    idx = xp.arange(50)
    a = random_streams.uniform(3, 1, idx, 7, (4, 5))
    b = random_streams.uniform(3, 1, idx, 7, (4, 5))
    assert a.shape == (50, 4, 5)
    numpy.testing.assert_array_equal(npalexnet.asnumpy(a), npalexnet.asnumpy(b))


def test_numbers_do_not_depend_on_how_the_indices_are_split():
    idx = numpy.random.default_rng(0).permutation(1000)[:300]
    whole = random_streams.uniform(11, 2, idx, 5, (64,))
    parts = [random_streams.uniform(11, 2, part, 5, (64,)) for part in numpy.array_split(idx, 7)]
    numpy.testing.assert_array_equal(whole, numpy.concatenate(parts))
    reordered = numpy.argsort(idx)
    numpy.testing.assert_array_equal(random_streams.uniform(11, 2, idx[reordered], 5, (64,)), whole[reordered])


@pytest.mark.parametrize("field", ["seed", "epoch", "stream", "index"])
def test_every_key_field_changes_the_numbers(field):
    keys = {"seed": 1, "epoch": 0, "stream": 3}
    idx = numpy.arange(20)
    base = random_streams.uniform(keys["seed"], keys["epoch"], idx, keys["stream"], (8,))
    if field == "index":
        other = random_streams.uniform(keys["seed"], keys["epoch"], idx + 20, keys["stream"], (8,))
    else:
        keys[field] += 1
        other = random_streams.uniform(keys["seed"], keys["epoch"], idx, keys["stream"], (8,))
    assert (base != other).mean() > 0.99


def test_uniformity_and_independence():
    u = random_streams.uniform(0, 0, numpy.arange(2000), 1, (100,)).ravel()   # 200,000 numbers
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = numpy.histogram(u, bins=20, range=(0, 1))[0]
    expected = u.size / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.3                      # 19 degrees of freedom, p = 0.001
    assert abs(u.mean() - 0.5) < 4 * (1 / 12) ** 0.5 / u.size ** 0.5
    lag1 = numpy.corrcoef(u[:-1], u[1:])[0, 1]
    assert abs(lag1) < 4 / u.size ** 0.5
    neighbours = random_streams.uniform(0, 0, numpy.arange(2000), 1, (1,)).ravel()
    assert abs(numpy.corrcoef(neighbours[:-1], neighbours[1:])[0, 1]) < 4 / 2000 ** 0.5   # adjacent samples


def test_float32_numbers_are_exact_and_below_one():
    u = random_streams.uniform(0, 0, numpy.arange(500), 2, (50,), dtype=numpy.float32)
    assert u.dtype == numpy.float32 and u.max() < 1.0
    assert numpy.all(u * 2 ** 24 == numpy.floor(u * 2 ** 24))


def test_integers_cover_the_range_evenly():
    k = random_streams.integers(5, 0, numpy.arange(9000), 1, 9)
    assert k.dtype == numpy.int64 and k.min() == 0 and k.max() == 8
    assert numpy.bincount(k, minlength=9).min() > 850


def test_hash_matches_a_scalar_reference():
    """The array code against a straightforward Python-int splitmix64 (pins the stream forever)."""
    mask = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    gamma = 0x9E3779B97F4A7C15
    seed, epoch, stream, index = 42, 3, 9, 123456
    scalar = mix((mix((mix(seed) + gamma + epoch) & mask) + gamma + stream) & mask)
    key = mix(mix((index + gamma) & mask) ^ scalar)
    words = [mix((key + (j + 1) * gamma) & mask) for j in range(3)]
    got = random_streams.uniform(seed, epoch, [index], stream, (3,))[0]
    numpy.testing.assert_array_equal(got, [(w >> 11) * 2.0 ** -53 for w in words])


def test_dropout_in_sample_keys_is_independent_of_the_batch_split():
    drop = nn.Dropout(0.5)
    x = numpy.ones((12, 40))
    idx = numpy.arange(100, 112)
    with random_streams.sample_keys(idx, seed=3, epoch=1):
        whole = drop(x)
    pieces = []
    for part in (slice(0, 5), slice(5, 12)):
        with random_streams.sample_keys(idx[part], seed=3, epoch=1):
            pieces.append(drop(x[part]))
    numpy.testing.assert_array_equal(whole, numpy.concatenate(pieces))
    assert 0.3 < (whole == 0).mean() < 0.7
    numpy.testing.assert_array_equal(drop.backward(x[5:12]), pieces[1])   # the mask of the last forward


def test_two_dropout_calls_in_one_context_get_different_masks():
    drop = nn.Dropout(0.5)
    x = numpy.ones((8, 64))
    with random_streams.sample_keys(numpy.arange(8), seed=0, epoch=0):
        a, b = drop(x), drop(x)
    assert (a != b).any()


def test_dropout_outside_the_context_uses_the_library_generator():
    x = numpy.ones((6, 30))
    npalexnet.manual_seed(9)
    a = nn.Dropout(0.5)(x)
    npalexnet.manual_seed(9)
    b = nn.Dropout(0.5)(x)
    numpy.testing.assert_array_equal(a, b)
    assert random_streams.active() is None
    with random_streams.sample_keys(numpy.arange(6), 0, 0):
        assert random_streams.active() is not None
    assert random_streams.active() is None


def test_dropout_with_an_explicit_seed_ignores_the_context():
    x = numpy.ones((6, 30))
    a = nn.Dropout(0.5, seed=4)(x)
    with random_streams.sample_keys(numpy.arange(6), 0, 0):
        b = nn.Dropout(0.5, seed=4)(x)
    numpy.testing.assert_array_equal(a, b)


def test_a_batch_that_does_not_match_the_keys_is_an_error():
    with random_streams.sample_keys(numpy.arange(4), 0, 0), pytest.raises(ValueError, match="4 sample indices"):
        nn.Dropout(0.5)(numpy.ones((5, 3)))
    with pytest.raises(ValueError, match="1-D integer"), random_streams.sample_keys(numpy.ones(3), 0, 0):
        pass


def test_numpy_and_cupy_draw_the_same_bits(xp):
    idx = numpy.arange(37)
    host = random_streams.uniform(1, 2, idx, 3, (5,))
    device = random_streams.uniform(1, 2, xp.asarray(idx), 3, (5,))
    numpy.testing.assert_array_equal(npalexnet.asnumpy(device), host)


def test_normal_numbers_are_standard_normal_and_keyed():
    idx = numpy.arange(200_000)
    z = random_streams.normal(5, 2, idx, 9, (2,))
    assert z.shape == (200_000, 2) and numpy.isfinite(z).all()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(numpy.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.01
    # the tails of a normal: P(|z| > 2) = 4.55%, P(|z| > 3) = 0.27%
    assert abs((numpy.abs(z) > 2).mean() - 0.0455) < 0.002 and abs((numpy.abs(z) > 3).mean() - 0.0027) < 0.0005
    part = random_streams.normal(5, 2, idx[1000:1010][::-1], 9, (2,))
    numpy.testing.assert_array_equal(part, z[1000:1010][::-1])
    assert (random_streams.normal(5, 3, idx[:100], 9, (2,)) != z[:100]).all()


def test_normal_is_box_muller_on_the_streams_uniforms():
    idx = numpy.arange(50)
    u = random_streams.uniform(1, 0, idx, 4, (2, 3))
    expected = numpy.sqrt(-2 * numpy.log(1 - u[:, 0])) * numpy.cos(2 * numpy.pi * u[:, 1])
    numpy.testing.assert_allclose(random_streams.normal(1, 0, idx, 4, (3,)), expected, rtol=1e-12)


def test_alternating_flips_start_random_and_then_turn_every_image_over():
    idx = numpy.arange(3000, 5000)
    flips = [random_streams.crop_flip_params(4, e, idx, pad=2, flip_schedule="alternating")[2] for e in range(4)]
    random_first = random_streams.crop_flip_params(4, 0, idx, pad=2)[2]
    numpy.testing.assert_array_equal(flips[0], random_first)          # epoch 0: the random schedule's draw
    assert 900 < flips[0].sum() < 1100
    for e in range(1, 4):
        numpy.testing.assert_array_equal(flips[e], ~flips[e - 1])      # each image the other way round
    # the crops stay the random schedule's, and a sample's flips do not depend on its batch
    for e in (1, 2):
        ours = random_streams.crop_flip_params(4, e, idx, pad=2, flip_schedule="alternating")
        theirs = random_streams.crop_flip_params(4, e, idx, pad=2)
        numpy.testing.assert_array_equal(ours[0], theirs[0])
        numpy.testing.assert_array_equal(ours[1], theirs[1])
        part = random_streams.crop_flip_params(4, e, idx[[7, 3, 1500]], pad=2, flip_schedule="alternating")[2]
        numpy.testing.assert_array_equal(part, flips[e][[7, 3, 1500]])


def test_the_random_schedule_draws_each_epochs_flips_afresh():
    idx = numpy.arange(2000)
    a, b = (random_streams.crop_flip_params(4, e, idx)[2] for e in (0, 1))
    assert 0.4 < (a == b).mean() < 0.6                                # independent, not turned over


def test_no_flips_under_either_schedule_and_an_unknown_schedule_is_refused():
    for schedule in random_streams.FLIP_SCHEDULES:
        assert not random_streams.crop_flip_params(0, 1, numpy.arange(9), flip=False, flip_schedule=schedule)[2].any()
    with pytest.raises(ValueError, match="unknown flip schedule 'sometimes': expected one of random, alternating"):
        random_streams.crop_flip_params(0, 0, numpy.arange(3), flip_schedule="sometimes")


@pytest.mark.parametrize("a, b", [(0.05, 0.05), (0.2, 0.2), (1.0, 1.0), (2.0, 2.0), (0.5, 2.0)])
def test_beta_numbers_have_the_beta_distributions_moments_and_are_keyed(a, b):
    idx = numpy.arange(20_000)   # the means' tolerances are 4.5 standard errors or more
    x = random_streams.beta(3, 1, idx, 7, a, b)
    assert x.shape == (20_000,) and ((x >= 0) & (x <= 1)).all()
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(x.mean() - mean) < 0.015 and abs(x.var() / var - 1) < 0.04, (x.mean(), mean, x.var(), var)
    if a == b:   # Beta(a, a) is symmetric about 1/2
        assert abs((x < 0.5).mean() - 0.5) < 0.015
    numpy.testing.assert_array_equal(random_streams.beta(3, 1, idx[500:510][::-1], 7, a, b), x[500:510][::-1])
    assert (random_streams.beta(3, 2, idx[:100], 7, a, b) != x[:100]).any()


def test_beta_is_johnks_rejection_on_the_streams_uniforms():
    """The first pair (u, v) of the key's block with u^(1/a) + v^(1/b) <= 1 gives u^(1/a) / (u^(1/a) + v^(1/b))."""
    idx, a, b = numpy.arange(40), 0.7, 1.3
    u = 1 - random_streams.uniform(2, 0, idx, 7, (2, random_streams.BETA_PAIRS))
    x, y = u[:, 0] ** (1 / a), u[:, 1] ** (1 / b)
    first = numpy.argmax(x + y <= 1, axis=1)
    rows = numpy.arange(40)
    expected = x[rows, first] / (x[rows, first] + y[rows, first])
    numpy.testing.assert_allclose(random_streams.beta(2, 0, idx, 7, a, b), expected, rtol=1e-12)


@pytest.mark.parametrize("a, b", [(0.0, 1.0), (1.0, -1.0), (2.5, 1.0)])
def test_beta_parameters_out_of_range_are_refused(a, b):
    with pytest.raises(ValueError, match=r"beta: the parameters must be in \(0, 2\]"):
        random_streams.beta(0, 0, numpy.arange(3), 7, a, b)
