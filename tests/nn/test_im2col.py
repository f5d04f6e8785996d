"""The reference im2col/col2im: against a direct definition, and col2im as the exact adjoint of im2col."""

import numpy
import pytest

from npalexnet.nn import im2col as K

CASES = [
    # (N, C, H, W, kernel, stride, padding)
    (2, 3, 7, 7, (3, 3), (1, 1), (0, 0)),
    (2, 2, 8, 9, (3, 2), (2, 1), (1, 0)),
    (1, 4, 11, 11, (5, 5), (2, 2), (2, 2)),
    (3, 1, 6, 6, (2, 2), (3, 3), (0, 0)),
    (1, 2, 3, 3, (3, 3), (1, 1), (1, 1)),
    (2, 3, 31, 31, (11, 11), (4, 4), (2, 2)),
]


def reference_im2col(x, kernel, stride, padding):
    """The definition, one element at a time."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = K.conv_output_size(h, kh, sh, ph), K.conv_output_size(w, kw, sw, pw)
    xp = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    col = numpy.zeros((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for ci, ky, kx, ni, i, j in numpy.ndindex(c, kh, kw, n, oh, ow):
        col[ci, ky, kx, ni, i, j] = xp[ni, ci, i * sh + ky, j * sw + kx]
    return col.reshape(c * kh * kw, n * oh * ow)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_im2col_matches_definition(case):
    n, c, h, w, kernel, stride, padding = case
    x = numpy.random.default_rng(0).standard_normal((n, c, h, w)).astype(numpy.float32)
    numpy.testing.assert_array_equal(K.im2col(x, kernel, stride, padding), reference_im2col(x, kernel, stride, padding))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_col2im_is_the_adjoint_of_im2col(case):
    # <im2col(x), c> == <x, col2im(c)> for all x, c  <=>  col2im = im2col^T
    n, c, h, w, kernel, stride, padding = case
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w))
    col = rng.standard_normal(reference_im2col(x, kernel, stride, padding).shape)
    lhs = numpy.sum(reference_im2col(x, kernel, stride, padding) * col)
    back = K.col2im(col, x.shape, kernel, stride, padding)
    assert back.shape == x.shape
    assert numpy.sum(x * back) == pytest.approx(lhs, rel=1e-12)


def test_im2col_accepts_any_memory_layout():
    x = numpy.random.default_rng(0).standard_normal((3, 2, 5, 5)).transpose(1, 0, 2, 3)  # CNHW memory
    numpy.testing.assert_array_equal(K.im2col(x, (3, 3), (1, 1), (1, 1)),
                                     reference_im2col(numpy.ascontiguousarray(x), (3, 3), (1, 1), (1, 1)))


def test_output_size_rounds_down_like_torch():
    assert K.conv_output_size(227, 11, 4, 0) == 55
    assert K.conv_output_size(224, 11, 4, 2) == 55
    assert K.conv_output_size(8, 3, 2, 0) == 3
