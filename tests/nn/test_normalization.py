"""LocalResponseNorm against torch, including even sizes and narrow inputs."""

import numpy
import pytest
import torch

from npalexnet import nn
from npalexnet.gradcheck.torch_compare import check_against_torch

CASES = [
    (5, 1e-4, 0.75, 1.0, 8),     # torch defaults
    (5, 5e-4, 0.75, 2.0, 8),     # the paper's constants in torch's convention
    (4, 1e-2, 0.75, 2.0, 7),     # even size: asymmetric window
    (2, 1e-1, 0.5, 1.0, 5),
    (7, 1e-1, 0.75, 1.0, 3),     # fewer channels than the window
    (1, 1e-1, 0.75, 1.0, 4),     # window of one channel
]


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_lrn_matches_torch(case, dtype, xp):
    size, alpha, beta, k, channels = case
    # Large activations so the normalisation, not the identity, dominates.
    x = 10 * numpy.random.default_rng(0).standard_normal((2, channels, 4, 3))
    check_against_torch(nn.LocalResponseNorm(size, alpha, beta, k),
                        torch.nn.LocalResponseNorm(size, alpha, beta, k), x, xp=xp, dtype=dtype)


def test_lrn_paper_constants_mean_alpha_not_divided_by_n():
    x = numpy.random.default_rng(0).standard_normal((1, 6, 2, 2)) * 30
    y = nn.LocalResponseNorm.from_paper()(x)
    # b_c = a_c / (k + alpha * sum over the 5-channel window of a^2)^beta, straight from the paper
    sq = numpy.pad(x ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(sq[:, d:d + 6] for d in range(5))
    numpy.testing.assert_allclose(y, x / (2.0 + 1e-4 * window) ** 0.75, rtol=1e-12)


def test_lrn_on_3d_input(xp):
    x = numpy.random.default_rng(0).standard_normal((2, 6, 5)) * 5
    check_against_torch(nn.LocalResponseNorm(3, 0.1), torch.nn.LocalResponseNorm(3, 0.1), x, xp=xp)


def test_lrn_rejects_2d_input():
    with pytest.raises(ValueError, match="LocalResponseNorm"):
        nn.LocalResponseNorm(5)(numpy.zeros((2, 3)))
