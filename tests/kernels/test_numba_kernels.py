"""The numba im2col/col2im kernels against the reference functions, on every memory layout.

The layers built on the numba kernels are held to their references by the
conformance suite (test_conformance.py); these check the two unfolding
kernels themselves, which the convolutions share.
"""

import numpy
import pytest

from npalexnet.gradcheck import gamma
from npalexnet.kernels import numba_kernels as NK
from npalexnet.nn import im2col as K

pytestmark = pytest.mark.skipif(not NK.AVAILABLE, reason="numba is not installed")

CONV_CASES = [
    # (N, C, H, W, kernel, stride, padding)
    (2, 3, 7, 7, (3, 3), (1, 1), (0, 0)),
    (2, 2, 8, 9, (3, 2), (2, 1), (1, 0)),
    (1, 4, 11, 11, (5, 5), (2, 2), (2, 2)),
    (3, 1, 6, 6, (2, 2), (3, 3), (0, 0)),
    (2, 3, 31, 31, (11, 11), (4, 4), (2, 2)),
    (2, 5, 4, 4, (3, 3), (1, 1), (1, 1)),
]


def layouts(x):
    """The same logical array as C-contiguous NCHW, as a view of CNHW memory, and strided."""
    yield x
    yield numpy.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    wide = numpy.zeros(x.shape[:3] + (2 * x.shape[3],), dtype=x.dtype)
    wide[..., ::2] = x
    yield wide[..., ::2]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_im2col_and_col2im_equal_the_array_code(case, dtype):
    n, c, h, w, kernel, stride, padding = case
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    out_hw = (K.conv_output_size(h, kernel[0], stride[0], padding[0]),
              K.conv_output_size(w, kernel[1], stride[1], padding[1]))
    expected = K.im2col(x, kernel, stride, padding)
    for view in layouts(x):
        numpy.testing.assert_array_equal(NK.im2col(view, kernel, stride, padding, out_hw), expected)
    col = rng.standard_normal(expected.shape).astype(dtype)
    back = NK.col2im(col, x.shape, kernel, stride, padding, out_hw)
    # The same sums of at most ceil(KH/SH) * ceil(KW/SW) entries in another order: each within
    # gamma_n of the sum of the absolute values of its terms (Higham 2002, Section 4.2).
    overlaps = -(-kernel[0] // stride[0]) * -(-kernel[1] // stride[1])
    bound = 2 * gamma(overlaps, dtype) * K.col2im(numpy.abs(col), x.shape, kernel, stride, padding)
    assert numpy.all(numpy.abs(back - K.col2im(col, x.shape, kernel, stride, padding)) <= bound)
    assert back.dtype == dtype and back.shape == x.shape


