"""The numba CPU kernels against the array code they replace, element for element."""

import numpy
import pytest

from npalexnet import nn, optim
from npalexnet.kernels import im2col as K
from npalexnet.kernels import numba_kernels as NK

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
    expected = K.im2col_array(x, kernel, stride, padding)
    for view in layouts(x):
        numpy.testing.assert_array_equal(NK.im2col(view, kernel, stride, padding, out_hw), expected)
    col = rng.standard_normal(expected.shape).astype(dtype)
    back = NK.col2im(col, x.shape, kernel, stride, padding, out_hw)
    # Same sums in a different order: equal to rounding.
    numpy.testing.assert_allclose(back, K.col2im_array(col, x.shape, kernel, stride, padding),
                                  rtol=1e-5 if dtype == numpy.float32 else 1e-12, atol=1e-6)
    assert back.dtype == dtype and back.shape == x.shape


POOL_CASES = [(3, 2, 0, 13, 13), (2, 2, 0, 8, 9), ((3, 2), (1, 2), 1, 7, 6), (3, 1, 1, 5, 5), (2, 3, 0, 7, 7)]


def run_pool(module, x, g):
    y = module(x)
    return y, module.backward(g)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_equals_the_array_code(case, ties, dtype, monkeypatch):
    k, s, p, h, w = case
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((2, 3, h, w))
    if ties:
        x = numpy.round(x)          # many equal values: the first maximum must win in both
    x = x.astype(dtype)
    pool = nn.MaxPool2d(k, s, p)
    g = rng.standard_normal(pool.output_shape(x.shape)).astype(dtype)
    fast_y, fast_dx = run_pool(pool, x, g)
    monkeypatch.setenv(NK.ENV_VAR, "0")
    slow_y, slow_dx = run_pool(pool, x, g)
    numpy.testing.assert_array_equal(fast_y, slow_y)
    # A pixel that wins several overlapping windows sums their gradients in another order.
    numpy.testing.assert_allclose(fast_dx, slow_dx, rtol=1e-6 if dtype == numpy.float32 else 1e-14, atol=1e-7)
    assert fast_dx.dtype == dtype


@pytest.mark.parametrize("config", [dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
                                    dict(lr=0.01, momentum=0.5, dampening=0.3, weight_decay=1e-2)], ids=str)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_fused_sgd_equals_the_array_code(config, dtype, monkeypatch):
    rng = numpy.random.default_rng(2)
    start = rng.standard_normal((5, 7)).astype(dtype)
    grads = [rng.standard_normal((5, 7)).astype(dtype) for _ in range(4)]
    results = []
    for setting in ("1", "0"):
        monkeypatch.setenv(NK.ENV_VAR, setting)
        p = nn.Parameter(start.copy())
        opt = optim.SGD([p], **config)
        for g in grads:
            p.grad = g.copy()
            opt.step()
        results.append(p.data)
    numpy.testing.assert_allclose(results[0], results[1], rtol=1e-6 if dtype == numpy.float32 else 1e-15)


def test_switch_and_fallback(monkeypatch):
    x = numpy.ones((1, 1, 3, 3), dtype=numpy.float32)
    assert NK.use_for(x)
    assert not NK.use_for(x.astype(numpy.float16)) and not NK.use_for(x.astype(numpy.int32))
    monkeypatch.setenv(NK.ENV_VAR, "off")
    assert not NK.enabled()
    monkeypatch.setenv(NK.ENV_VAR, "1")
    monkeypatch.setattr(NK, "AVAILABLE", False)      # numba missing: the array code runs
    assert not NK.use_for(x)
    numpy.testing.assert_array_equal(K.im2col(x, (2, 2), (1, 1), (0, 0)), K.im2col_array(x, (2, 2), (1, 1), (0, 0)))


def cn_view(x):
    """``x`` as an (N, C, H, W) view of (C, N, H, W) memory: what a convolution and ReLU hand on."""
    return numpy.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("nan", [False, True])
def test_maxpool_on_other_layouts_and_nans_equals_the_array_code(case, nan, dtype, monkeypatch):
    k, s, p, h, w = case
    rng = numpy.random.default_rng(3)
    x = numpy.round(rng.standard_normal((5, 3, h, w)), 1)    # batch 5 (the kernel's inner loop), some ties
    if nan:
        # NaNs first in a window stay the maximum, later ones never win: the kernel must agree.
        x.reshape(-1)[rng.choice(x.size, x.size // 8, replace=False)] = numpy.nan
        x[:, 0, 0, 0] = numpy.nan
    x = x.astype(dtype)
    pool = nn.MaxPool2d(k, s, p)
    g = rng.standard_normal(pool.output_shape(x.shape)).astype(dtype)
    monkeypatch.setenv(NK.ENV_VAR, "0")
    slow_y, slow_dx = run_pool(pool, x, g)
    monkeypatch.setenv(NK.ENV_VAR, "1")
    if nan:
        assert numpy.isnan(slow_y).any() and not numpy.isnan(slow_y).all()
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == numpy.float32 else {"rtol": 1e-14, "atol": 1e-14}
    for view in list(layouts(x))[1:]:        # the CN view and the strided one
        fast_y, fast_dx = run_pool(pool, view, g)
        numpy.testing.assert_array_equal(fast_y, slow_y)      # NaN positions included
        # Sums of up to six overlapping windows' gradients, in another order: a few ulps of terms ~1.
        numpy.testing.assert_allclose(fast_dx, slow_dx, **tol)
        assert fast_y.dtype == fast_dx.dtype == dtype


LRN_CASES = [
    # (size, alpha, beta, k, channels)
    (5, 5e-4, 0.75, 2.0, 7),     # the paper's layer: the sqrt path for beta = 0.75
    (5, 1e-1, 0.6, 1.0, 7),      # any other beta: the pow path
    (3, 1e-1, 0.75, 1.0, 6),
    (3, 1e-1, 0.6, 2.0, 6),
    (4, 1e-2, 0.75, 2.0, 7),     # even size: an asymmetric window, mirrored in backward
    (4, 1e-1, 0.6, 1.0, 5),
    (5, 1e-1, 0.75, 1.0, 3),     # fewer channels than the window
    (4, 1e-1, 0.6, 1.0, 2),
]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", LRN_CASES, ids=str)
def test_lrn_kernels_equal_the_array_code(case, dtype, monkeypatch):
    size, alpha, beta, k, channels = case
    rng = numpy.random.default_rng(4)
    # Large activations: the normalisation, not the identity, dominates.
    x = cn_view(10 * rng.standard_normal((3, channels, 4, 5))).astype(dtype)
    assert NK.lrn_applies(x) and not NK.lrn_applies(numpy.ascontiguousarray(x))
    g = rng.standard_normal(x.shape).astype(dtype)
    lrn = nn.LocalResponseNorm(size, alpha, beta, k)
    fast = [run_pool(lrn, x, grad) for grad in (g, cn_view(g))]   # any layout of the upstream gradient
    monkeypatch.setenv(NK.ENV_VAR, "0")
    slow_y, slow_dx = run_pool(lrn, x, g)
    tol = {"rtol": 2e-6, "atol": 1e-6} if dtype == numpy.float32 else {"rtol": 1e-13, "atol": 1e-14}
    for fast_y, fast_dx in fast:
        numpy.testing.assert_allclose(fast_y, slow_y, **tol)
        numpy.testing.assert_allclose(fast_dx, slow_dx, **tol)
        assert fast_y.dtype == fast_dx.dtype == dtype
        # Outputs keep the (C, N, H, W) memory for the next layer.
        assert fast_y.transpose(1, 0, 2, 3).flags.c_contiguous and fast_dx.transpose(1, 0, 2, 3).flags.c_contiguous


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", LRN_CASES, ids=str)
@pytest.mark.parametrize("batch", [1, 3])
def test_lrn_kernels_match_torch(case, batch, dtype):
    import torch

    from tests.conftest import check_against_torch
    size, alpha, beta, k, channels = case
    x = cn_view(10 * numpy.random.default_rng(5).standard_normal((batch, channels, 3, 4))).astype(dtype)
    # check_against_torch's numpy.asarray(x, dtype) keeps this view (no copy needed): the kernels run.
    assert numpy.asarray(x, dtype=dtype) is x and NK.lrn_applies(x)
    check_against_torch(nn.LocalResponseNorm(size, alpha, beta, k), torch.nn.LocalResponseNorm(size, alpha, beta, k),
                        x, dtype=dtype)
