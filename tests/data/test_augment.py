"""Batched augmentation against plain NumPy references (numpy.pad, slicing, torch's interpolate),
on every backend (CuPy where a GPU exists)."""

from __future__ import annotations

import numpy
import pytest

from npalexnet import asnumpy, random_streams
from tests.devicearray import FakeDeviceArray
from npalexnet.data.augment import (
    ERASE_RATIO,
    ERASE_SCALE,
    Preprocess,
    channel_stats,
    crop_flip,
    erase,
    erase_params,
    hflip,
    interpolation_matrix,
    normalize,
    resize,
    source_indices,
)


def _images(b=6, c=3, h=8, w=8, seed=0):
    return numpy.random.default_rng(seed).integers(0, 256, size=(b, c, h, w)).astype(numpy.uint8)


@pytest.mark.parametrize("mode, np_mode", [("reflect", "reflect"), ("zero", "constant")])
def test_crop_flip_matches_pad_then_slice(xp, mode, np_mode):
    x = _images()
    pad = 3
    rng = numpy.random.default_rng(1)
    oy, ox = rng.integers(0, 2 * pad + 1, 6), rng.integers(0, 2 * pad + 1, 6)
    flips = numpy.array([True, False, True, False, True, False])
    padded = numpy.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=np_mode)
    expected = numpy.stack([padded[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8] for i in range(6)])
    expected[flips] = expected[flips][..., ::-1]
    out = crop_flip(xp.asarray(x), oy, ox, flips, pad, mode)
    assert out.dtype == numpy.uint8 and isinstance(out, xp.ndarray)
    numpy.testing.assert_array_equal(asnumpy(out), expected)


def test_crop_corners_and_centre():
    """Offset P is the identity; offsets 0 and 2P shift the image by P pixels."""
    x = _images(b=1)
    pad = 2
    numpy.testing.assert_array_equal(crop_flip(x, [pad], [pad], [False], pad), x)
    shifted = crop_flip(x, [2 * pad], [0], [False], pad, "zero")
    numpy.testing.assert_array_equal(shifted[0, :, :-pad, pad:], x[0, :, pad:, :-pad])
    assert not shifted[0, :, -pad:, :].any() and not shifted[0, :, :, :pad].any()


def test_unpadded_crops_smaller_than_the_image_are_windows_and_their_mirrors(xp):
    """The paper's patches (pad 0, a window smaller than the image): slicing, and a flip of the slice."""
    rng = numpy.random.default_rng(5)
    images = rng.integers(0, 256, (6, 3, 11, 9), dtype=numpy.uint8)
    oy, ox, flips = rng.integers(0, 5, 6), rng.integers(0, 3, 6), numpy.array([1, 0, 1, 1, 0, 0], bool)
    out = asnumpy(crop_flip(xp.asarray(images), xp.asarray(oy), xp.asarray(ox), xp.asarray(flips), 0, size=7))
    assert out.shape == (6, 3, 7, 7)
    for n in range(6):
        window = images[n, :, oy[n]:oy[n] + 7, ox[n]:ox[n] + 7]
        numpy.testing.assert_array_equal(out[n], window[..., ::-1] if flips[n] else window)
    with pytest.raises(ValueError, match="leave a 11x9 image"):
        crop_flip(xp.asarray(images), xp.asarray(oy), xp.asarray(ox + 1), xp.asarray(flips), 0, size=7)


def test_source_indices_reflect_and_errors():
    rows, valid = source_indices(numpy, [0], 4, 2, "reflect")
    assert valid is None
    assert rows.tolist() == [[2, 1, 0, 1]]            # numpy's reflect: ..2 1 | 0 1 2 3 | 2 1..
    with pytest.raises(ValueError, match="larger than"):
        source_indices(numpy, [0], 4, 4, "reflect")
    with pytest.raises(ValueError, match="padding mode"):
        source_indices(numpy, [0], 4, 1, "edge")


def test_hflip_only_flagged_images(xp):
    x = _images(b=2)
    out = asnumpy(hflip(xp.asarray(x), [True, False]))
    numpy.testing.assert_array_equal(out[0], x[0, :, :, ::-1])
    numpy.testing.assert_array_equal(out[1], x[1])


def test_normalize_per_channel(xp):
    x = _images()
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = asnumpy(normalize(xp.asarray(x), mean, std))
    expected = (x / 255.0 - numpy.array(mean)[None, :, None, None]) / numpy.array(std)[None, :, None, None]
    assert out.dtype == numpy.float32
    numpy.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [227, 13])
def test_resize_matches_torch(xp, mode, size):
    torch = pytest.importorskip("torch")
    x = numpy.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(numpy.float32)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size), mode=mode, **kwargs)
    numpy.testing.assert_allclose(asnumpy(resize(xp.asarray(x), size, mode)), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_interpolation_rows_sum_to_one_and_identity():
    m = interpolation_matrix(numpy, 32, 227, "bilinear", numpy.float64)
    numpy.testing.assert_allclose(m.sum(axis=1), 1.0)
    x = numpy.ones((1, 1, 5, 5), numpy.float32)
    assert resize(x, 5) is x
    with pytest.raises(ValueError, match="resize mode"):
        interpolation_matrix(numpy, 4, 8, "bicubic")


def test_preprocess_train_is_a_function_of_seed_epoch_and_image_index():
    x = _images(b=8)
    pre = Preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 8, pad=2)
    indices = numpy.arange(10, 18)
    a = pre.train(x, 7, 0, indices)
    b = pre.train(x, 7, 0, indices)
    numpy.testing.assert_array_equal(a, b)
    for other in (pre.train(x, 8, 0, indices), pre.train(x, 7, 1, indices), pre.train(x, 7, 0, indices + 1)):
        assert not numpy.array_equal(a, other)
    # an image keeps its augmentation in any batch: the same index in another position
    numpy.testing.assert_array_equal(pre.train(x[3:5], 7, 0, indices[3:5]), a[3:5])
    assert a.shape == (8, 3, 8, 8) and a.dtype == numpy.float32
    # evaluation: no randomness, same normalisation
    numpy.testing.assert_array_equal(pre.eval(x), normalize(x, pre.mean, pre.std))
    assert Preprocess((0.5,) * 3, (0.25,) * 3, 227).eval(x).shape == (8, 3, 227, 227)


@pytest.mark.parametrize("pad", [0, 2])
def test_alternating_flips_show_each_image_mirrored_in_the_next_epoch(pad):
    x = _images(b=64)
    indices = numpy.arange(500, 564)
    alternating = Preprocess((0.5,) * 3, (0.25,) * 3, 8, pad=pad, flip_schedule="alternating")
    epochs = [alternating.train(x, 3, e, indices) for e in range(3)]
    numpy.testing.assert_array_equal(epochs[0], Preprocess((0.5,) * 3, (0.25,) * 3, 8, pad=pad).train(x, 3, 0, indices))
    flips = [random_streams.crop_flip_params(3, e, indices, pad=pad, flip_schedule="alternating")[2] for e in range(3)]
    assert 16 < flips[0].sum() < 48 and (flips[1] == ~flips[0]).all() and (flips[2] == flips[0]).all()
    if pad == 0:   # no crops: epoch 1 is epoch 0 mirrored, image by image, and epoch 2 is epoch 0
        numpy.testing.assert_array_equal(epochs[1], epochs[0][..., ::-1])
        numpy.testing.assert_array_equal(epochs[2], epochs[0])


def test_preprocess_rejects_bad_options():
    with pytest.raises(ValueError, match="padding mode"):
        Preprocess((0,), (1,), 32, padding="edge")
    with pytest.raises(ValueError, match=">= 0"):
        Preprocess((0,), (1,), 32, pad=-1)
    with pytest.raises(ValueError, match="unknown flip schedule 'never': expected one of random, alternating"):
        Preprocess((0,), (1,), 32, flip_schedule="never")


def test_channel_stats():
    x = _images(b=50, c=2)
    mean, std = channel_stats(x, chunk=7)
    scaled = x / 255.0
    numpy.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)))
    numpy.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)))


def test_channel_stats_of_images_on_the_device():
    """Images already on a GPU are copied a chunk at a time (numpy.asarray would refuse a CuPy array)."""
    x = _images(b=20, c=3)
    assert channel_stats(FakeDeviceArray(x), chunk=6) == channel_stats(x, chunk=6)


def test_erase_params_follow_random_erasings_law_and_are_keyed_by_the_image():
    idx = numpy.arange(20_000)
    top, left, height, width = erase_params(7, 3, idx, 0.5, (32, 32))
    erased = height > 0
    assert abs(erased.mean() - 0.5) < 0.015   # 4.2 standard errors
    assert (top[erased] >= 0).all() and (top + height <= 32).all() and (left + width <= 32).all()
    assert (height[erased] < 32).all() and (width[erased] < 32).all()
    area = (height * width)[erased] / 1024
    ratio = (height / numpy.maximum(width, 1))[erased]
    # rounding the sides to whole pixels widens the ranges a little
    assert area.min() >= ERASE_SCALE[0] * 0.5 and area.max() <= ERASE_SCALE[1] * 1.3
    assert ratio.min() >= ERASE_RATIO[0] * 0.7 and ratio.max() <= ERASE_RATIO[1] * 1.4
    assert abs(numpy.median(numpy.log(ratio))) < 0.05   # log-uniform about 1 (0.3 x 3.3 = 0.99)
    assert 0.13 < area.mean() < 0.2   # the mean of U(0.02, 0.33) is 0.175
    rows = numpy.concatenate([top[:, None], left[:, None]], 1)[erased]
    assert len(numpy.unique(rows, axis=0)) > 500   # boxes everywhere
    part = erase_params(7, 3, idx[100:110][::-1], 0.5, (32, 32))   # the same image, the same box, in any batch
    for a, b in zip(part, (top, left, height, width)):
        numpy.testing.assert_array_equal(a, b[100:110][::-1])
    assert not numpy.array_equal(erase_params(7, 4, idx[:50], 0.5, (32, 32))[2], height[:50])
    assert (erase_params(7, 3, idx[:50], 0.0, (32, 32))[2] == 0).all()


def test_erase_zeroes_each_images_box_and_nothing_else(xp):
    rng = numpy.random.default_rng(0)
    x = rng.uniform(1, 2, (3, 2, 6, 5)).astype(numpy.float32)
    out = asnumpy(erase(xp.asarray(x), [1, 0, 2], [2, 0, 0], [2, 0, 4], [3, 5, 5]))
    expected = x.copy()
    expected[0, :, 1:3, 2:5] = 0
    expected[2, :, 2:6, 0:5] = 0
    numpy.testing.assert_array_equal(out, expected)


def test_preprocess_erases_after_normalising_with_the_keyed_boxes():
    rng = numpy.random.default_rng(1)
    images = rng.integers(0, 256, (40, 3, 8, 8)).astype(numpy.uint8)
    idx = numpy.arange(100, 140)
    plain = Preprocess((0.5,) * 3, (0.25,) * 3, 8, pad=2).train(images, 3, 1, idx)
    erased = Preprocess((0.5,) * 3, (0.25,) * 3, 8, pad=2, erase=0.6).train(images, 3, 1, idx)
    top, left, height, width = erase_params(3, 1, idx, 0.6, (8, 8))
    assert (height > 0).sum() > 10
    for i in range(40):
        box = numpy.zeros((8, 8), bool)
        box[top[i]:top[i] + height[i], left[i]:left[i] + width[i]] = True
        assert (erased[i][:, box] == 0).all()
        numpy.testing.assert_array_equal(erased[i][:, ~box], plain[i][:, ~box])
    with pytest.raises(ValueError, match=r"random erasing probability must be in \[0, 1\], got 1.5"):
        Preprocess((0.5,) * 3, (0.25,) * 3, 8, erase=1.5)
