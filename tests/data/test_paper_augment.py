"""The paper's augmentation (Section 4.1): random patches and reflections, the PCA colour shift, against the paper."""

import numpy
import pytest

import npalexnet
from npalexnet import random_streams
from npalexnet.data.augment import resize
from npalexnet.data.paper_augment import PaperAugment, default_crop, lighting_alphas, lighting_shift

MEAN, STD = (0.45, 0.42, 0.40), (0.2, 0.25, 0.3)


def images(n=4, size=12, seed=0):
    return numpy.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=numpy.uint8)


def pca(seed=1):
    """A covariance's eigen-decomposition: eigenvalues largest first, eigenvectors as columns."""
    a = numpy.random.default_rng(seed).standard_normal((3, 3))
    eigvals, eigvecs = numpy.linalg.eigh(a @ a.T / 30)
    return eigvals[::-1], eigvecs[:, ::-1]


def test_the_colour_augmentation_is_the_papers_formula():
    """To each pixel I_xy add [p1, p2, p3][a1 l1, a2 l2, a3 l3]^T, a_i ~ N(0, 0.1) once per image;
    written here pixel by pixel, as the paper states it."""
    eigvals, eigvecs = pca()
    x = images(3, 6)
    indices = numpy.array([4, 17, 9])
    augment = PaperAugment(MEAN, STD, eigvals, eigvecs, out_size=6, stored=6, flip=False, dtype=numpy.float64)
    ours = augment.train(x, seed=2, epoch=5, indices=indices)
    alphas = 0.1 * random_streams.normal(2, 5, indices, random_streams.LIGHTING_STREAM, (3,))
    expected = numpy.empty((3, 3, 6, 6))
    for n in range(3):
        shift = numpy.zeros(3)
        for i in range(3):                               # sum_i p_i alpha_i lambda_i
            shift += eigvecs[:, i] * alphas[n, i] * eigvals[i]
        for y in range(6):
            for x_ in range(6):
                pixel = x[n, :, y, x_] / 255.0 + shift    # I_xy + the shift
                expected[n, :, y, x_] = (pixel - numpy.array(MEAN)) / numpy.array(STD)
    numpy.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    as_float32 = PaperAugment(MEAN, STD, eigvals, eigvecs, 6, 6, flip=False).train(x, 2, 5, indices)
    assert as_float32.dtype == numpy.float32
    numpy.testing.assert_allclose(as_float32, expected, rtol=1e-5, atol=1e-5)


def test_alphas_are_n_0_01_drawn_once_per_image_and_epoch():
    alphas = lighting_alphas(0, 3, numpy.arange(100_000))
    assert alphas.shape == (100_000, 3)
    assert abs(alphas.mean()) < 0.001 and abs(alphas.std() - 0.1) < 0.001
    assert numpy.abs(numpy.corrcoef(alphas.T) - numpy.eye(3)).max() < 0.01
    numpy.testing.assert_array_equal(lighting_alphas(0, 3, [77, 5]), alphas[[77, 5]])   # keyed by the image
    assert (lighting_alphas(0, 4, [77, 5]) != alphas[[77, 5]]).all()                    # redrawn each epoch


def test_lighting_shift_is_the_sum_of_scaled_eigenvectors():
    eigvals, eigvecs = pca(3)
    alphas = numpy.array([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]])
    shift = lighting_shift(alphas, eigvals, eigvecs)
    numpy.testing.assert_allclose(shift[0], sum(alphas[0, i] * eigvals[i] * eigvecs[:, i] for i in range(3)))
    assert (shift[1] == 0).all()


def test_random_patches_are_windows_of_the_image_and_their_reflections():
    x = images(64, 10)
    indices = numpy.arange(100, 164)
    augment = PaperAugment(MEAN, STD, *pca(), out_size=7, stored=10, lighting=0.0, dtype=numpy.float64)
    assert augment.crop == 7
    ours = augment.train(x, 1, 0, indices)
    oy, ox, flips = random_streams.crop_flip_params(1, 0, indices, flip=True, positions=4)
    for n in range(64):
        patch = x[n, :, oy[n]:oy[n] + 7, ox[n]:ox[n] + 7]
        patch = patch[..., ::-1] if flips[n] else patch
        expected = (patch / 255.0 - numpy.array(MEAN)[:, None, None]) / numpy.array(STD)[:, None, None]
        numpy.testing.assert_allclose(ours[n], expected, rtol=1e-12)
    assert set(oy.tolist()) == set(ox.tolist()) == {0, 1, 2, 3} and 16 < flips.sum() < 48


def test_an_image_gets_the_same_augmentation_in_any_batch():
    x = images(5, 16)
    augment = PaperAugment(MEAN, STD, *pca(), out_size=12, stored=16)
    whole = augment.train(x, 3, 1, numpy.array([10, 11, 12, 13, 14]))
    alone = augment.train(x[[3]], 3, 1, numpy.array([13]))
    numpy.testing.assert_array_equal(alone[0], whole[3])
    assert not numpy.array_equal(augment.train(x, 3, 2, numpy.array([10, 11, 12, 13, 14])), whole)


def test_alternating_reflections_turn_every_patch_over_in_the_next_epoch():
    x = images(32, 10)
    indices = numpy.arange(32)
    augment = PaperAugment(MEAN, STD, *pca(), out_size=10, stored=10, lighting=0.0, flip_schedule="alternating")
    first, second = augment.train(x, 5, 0, indices), augment.train(x, 5, 1, indices)
    numpy.testing.assert_array_equal(second, first[..., ::-1])        # the whole image is the only patch
    numpy.testing.assert_array_equal(first, PaperAugment(MEAN, STD, *pca(), out_size=10, stored=10,
                                                         lighting=0.0).train(x, 5, 0, indices))


def test_patches_of_small_stores_are_resized_to_the_input():
    assert default_crop(256, 227) == 227 and default_crop(256, 224) == 224 and default_crop(64, 227) == 56
    x = images(2, 64)
    augment = PaperAugment(MEAN, STD, *pca(), out_size=227, stored=64, flip=False, lighting=0.0)
    out = augment.train(x, 0, 0, numpy.array([0, 1]))
    assert out.shape == (2, 3, 227, 227) and augment.crop == 56
    oy, ox, _ = random_streams.crop_flip_params(0, 0, numpy.array([0, 1]), flip=False, positions=9)
    patch = numpy.stack([x[n, :, oy[n]:oy[n] + 56, ox[n]:ox[n] + 56] for n in range(2)])
    expected = resize(augment.eval(patch), 227)
    numpy.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_evaluation_is_the_whole_image_normalised():
    x = images(2, 16)
    augment = PaperAugment(MEAN, STD, *pca(), out_size=12, stored=16)
    out = augment.eval(x)
    assert out.shape == (2, 3, 16, 16)
    numpy.testing.assert_allclose(out, (x / 255.0 - numpy.array(MEAN)[:, None, None]) / numpy.array(STD)[:, None, None],
                                  rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="crop size must be in"):
        PaperAugment(MEAN, STD, *pca(), out_size=20, stored=16, crop=17)
    with pytest.raises(ValueError, match="standard deviation must be >= 0"):
        PaperAugment(MEAN, STD, *pca(), out_size=20, stored=16, lighting=-0.1)
    with pytest.raises(ValueError, match="unknown flip schedule 'x'"):
        PaperAugment(MEAN, STD, *pca(), out_size=20, stored=16, flip_schedule="x")


def test_the_device_computes_what_the_host_does(xp):
    x = images(4, 20)
    augment = PaperAugment(MEAN, STD, *pca(), out_size=24, stored=20)
    host = augment.train(x, 1, 1, numpy.arange(4))
    device = npalexnet.asnumpy(augment.train(xp.asarray(x), 1, 1, numpy.arange(4)))
    numpy.testing.assert_allclose(device, host, rtol=1e-5, atol=1e-5)
