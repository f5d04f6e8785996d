"""Winograd convolutions: the tiles, against torch, the numba transforms against the array code
they replace, the float32 rounding, the algorithm choice and ``input_grad=False``.

(The layer as a whole is held to Conv2d's reference by the conformance suite.)"""


import numpy
import pytest
import torch

import npalexnet
from npalexnet import config, kernels, nn
from npalexnet.gradcheck import gamma
from npalexnet.gradcheck.torch_compare import check_against_torch
from npalexnet.kernels import numba_kernels as NK
from npalexnet.kernels import winograd as W
from npalexnet.models import alexnet
from npalexnet.nn import conv as conv_module
from tests.kernels import rounding
from tests.kernels.test_numba_kernels import layouts

needs_numba = pytest.mark.skipif(not NK.AVAILABLE, reason="numba is not installed")

CASES = [
    # (in, out, padding, groups, bias, N, H, W)
    (3, 4, 0, 1, True, 3, 4, 4),          # a single tile per image
    (3, 4, 1, 1, True, 1, 5, 5),          # odd output: the last tile row/column half outside
    (2, 3, 2, 1, False, 3, 7, 7),         # padding 2 (output larger than the input), no bias
    (4, 6, 1, 2, True, 3, 8, 8),          # groups=2, even output
    (4, 4, 0, 2, False, 1, 13, 13),       # groups=2, odd output, no bias
    (3, 5, 1, 1, True, 3, 5, 8),          # non-square input: odd rows, even columns
    (2, 2, (1, 0), 2, True, 1, 7, 4),     # non-square padding and input, depthwise
    (4, 2, 2, 2, True, 3, 4, 13),        # padding 2 on a 4-row input, groups=2, batch 3
]


def case_id(case):
    cin, _cout, p, g, bias, n, h, w = case
    return f"{n}x{cin}x{h}x{w}-p{p}-g{g}" + ("" if bias else "-nobias")


def rng_input(shape, seed=0, dtype=numpy.float64):
    return numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)


def run(layer, x, g, input_grad=True):
    """(y, dx, dw, db) as host copies, from a clean gradient."""
    layer.zero_grad()
    y = npalexnet.asnumpy(layer(x)).copy()
    dx = layer.backward(g, input_grad=input_grad)
    dx = None if dx is None else npalexnet.asnumpy(dx).copy()
    db = None if layer.bias is None else npalexnet.asnumpy(layer.bias.grad).copy()
    return y, dx, npalexnet.asnumpy(layer.weight.grad).copy(), db


def assert_results_close(a, b, dtype):
    """Elementwise closeness of two (y, dx, dw, db) tuples: same sums, different order."""
    rtol, atol = (1e-12, 1e-12) if dtype == numpy.float64 else (1e-5, 1e-5)
    for name, ours, theirs in zip(("y", "dx", "dw", "db"), a, b):
        if ours is None or theirs is None:
            assert ours is None and theirs is None, name
            continue
        numpy.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)


# ---------------------------------------------------------------------------- the matrices
def test_transform_matrices_compute_a_2x2_correlation():
    # The identity everything rests on: A^T [(G g G^T) * (B^T d B)] A is the 2x2 valid
    # cross-correlation of a 4x4 tile with a 3x3 filter (Lavin and Gray, eq. 6).
    rng = numpy.random.default_rng(0)
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    y = W.AT @ ((W.G @ g @ W.G.T) * (W.BT @ d @ W.BT.T)) @ W.AT.T
    direct = numpy.array([[(d[i:i + 3, j:j + 3] * g).sum() for j in range(2)] for i in range(2)])
    numpy.testing.assert_allclose(y, direct, rtol=1e-13, atol=1e-14)
    # The Kronecker forms act on flattened (row-major) tiles the same way.
    flat = W.AA @ ((W.GG @ g.reshape(9)) * (W.BB @ d.reshape(16)))
    numpy.testing.assert_allclose(flat.reshape(2, 2), direct, rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------------------- against torch
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_winograd_conv_matches_torch(case, dtype, xp):
    cin, cout, p, g, bias, n, h, w = case
    module = nn.Conv2d(cin, cout, 3, padding=p, groups=g, bias=bias, algorithm="winograd")
    ref = torch.nn.Conv2d(cin, cout, 3, padding=p, groups=g, bias=bias)
    x = rng_input((n, cin, h, w), seed=3)
    assert is_winograd(module.to("cpu" if xp is numpy else "cuda"), xp.asarray(x))
    check_against_torch(module, ref, x, xp=xp, dtype=dtype)


# ---------------------------------------------------------------------------- numba vs array code
def transform_case(case, dtype, spec=W.F23, seed=6):
    """x, padding, TH, TW and OC for one of CASES."""
    cin, cout, p, _, _, n, h, w = case
    padding = p if isinstance(p, tuple) else (p, p)
    _, _, th, tw = W.tile_counts(h, w, padding, spec)
    x = rng_input((n, cin, h, w), seed=seed, dtype=dtype)
    return x, padding, th, tw, cout


def assert_same_linear_map(fast, slow, magnitude, terms, dtype):
    """Two evaluations of the same linear map, summing at most ``terms`` products each, in other
    orders: each within gamma_terms of the sum of the absolute values of its terms (``magnitude``)."""
    assert numpy.all(numpy.abs(fast - slow) <= 2 * gamma(terms, dtype) * magnitude)


def fits(case, spec):
    """Whether the input of ``case`` is large enough for the kernel of ``spec``."""
    _, _, p, _, _, _, h, w = case
    ph, pw = p if isinstance(p, tuple) else (p, p)
    return h + 2 * ph >= spec.r and w + 2 * pw >= spec.r


# Every tile on every case its kernel fits: the numba transforms are generic in the tile.
SPEC_CASES = [pytest.param(spec, case, id=f"F{spec.m}-{spec.r}-{case_id(case)}")
              for spec in (W.F23, W.F43, W.F25, W.F35) for case in CASES if fits(case, spec)]


@needs_numba
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("spec, case", SPEC_CASES)
def test_numba_input_transforms_equal_the_array_code(spec, case, dtype):
    x, padding, th, tw, _ = transform_case(case, dtype, spec)
    n, c = x.shape[:2]
    p = spec.positions
    shape = (p, c, n * th * tw)
    d = W.tiles_array(x, padding, th, tw, numpy.empty(shape, dtype=dtype), spec=spec)
    expected = (spec.BB.astype(dtype) @ d.reshape(p, -1)).reshape(shape)
    magnitude = (numpy.abs(spec.BB) @ numpy.abs(d.reshape(p, -1))).reshape(shape)
    for view in layouts(x):
        v = NK.winograd_input_transform(view, padding, th, tw, numpy.full(shape, numpy.nan, dtype=dtype), spec=spec)
        assert_same_linear_map(v, expected, magnitude, p, dtype)
    # Backward: dx = untiles(BB^T dV), overlapping tiles summed, padding cut off.
    dv = rng_input(shape, seed=7, dtype=dtype)
    expected_dx = W.untiles_array((spec.BB.T.astype(dtype) @ dv.reshape(p, -1)).reshape(shape), x.shape, padding,
                                  th, tw, spec=spec)
    magnitude_dx = W.untiles_array((numpy.abs(spec.BB.T) @ numpy.abs(dv.reshape(p, -1))).reshape(shape), x.shape,
                                   padding, th, tw, spec=spec)
    dx = NK.winograd_input_transform_backward(dv, x.shape, padding, th, tw, spec=spec)
    assert_same_linear_map(dx, expected_dx, magnitude_dx, p + -(-spec.alpha // spec.m) ** 2, dtype)
    assert dx.shape == x.shape and dx.dtype == dtype
    assert dx.transpose(1, 0, 2, 3).flags.c_contiguous, "dx should be (C, N, H, W) memory like the array code's"


@needs_numba
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("spec, case", SPEC_CASES)
def test_numba_output_transforms_equal_the_array_code(spec, case, dtype):
    x, padding, th, tw, oc = transform_case(case, dtype, spec)
    n, _, h, w = x.shape
    oh, ow, _, _ = W.tile_counts(h, w, padding, spec)
    p = spec.positions
    m = rng_input((p, oc, n * th * tw), seed=8, dtype=dtype)
    bias = rng_input((oc,), seed=9, dtype=dtype)
    dy = rng_input((n, oc, oh, ow), seed=10, dtype=dtype)
    fast_y = {b is None: NK.winograd_output_transform(m, b, (oc, n, oh, ow), th, tw, spec=spec)
              for b in (bias, None)}
    fast_dm = [NK.winograd_output_transform_backward(view, th, tw, numpy.full(m.shape, numpy.nan, dtype=dtype),
                                                     spec=spec)
               for view in layouts(dy)]
    magnitude_y = W.output_transform(numpy.abs(m).astype(numpy.float64), numpy.abs(bias).astype(numpy.float64),
                                     (oc, n, oh, ow), th, tw, spec=W.Spec(spec.m, spec.r, numpy.abs(spec.AT),
                                                                          spec.G, spec.BT))
    for b in (bias, None):   # the array branch
        slow = W.output_transform(m, b, (oc, n, oh, ow), th, tw, spec=spec)
        assert_same_linear_map(fast_y[b is None], slow, magnitude_y, p + 1, dtype)
        assert fast_y[b is None].shape == (oc, n, oh, ow) and fast_y[b is None].dtype == dtype
    abs_at = numpy.abs(spec.AT)
    for view, fast in zip(layouts(dy), fast_dm):
        # The NaN-filled output buffer proves every entry is written (zero beyond an odd edge).
        slow = W.output_transform_backward(view, th, tw, numpy.empty(m.shape, dtype=dtype), spec=spec)
        magnitude = W.output_transform_backward(numpy.abs(view).astype(numpy.float64), th, tw,
                                                numpy.empty(m.shape), spec=W.Spec(spec.m, spec.r, abs_at, spec.G,
                                                                                   spec.BT))
        assert_same_linear_map(fast, slow, magnitude, spec.m ** 2, dtype)


def test_the_array_transforms_run_when_numba_is_off(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a numba kernel was called with the numba setting off")

    for name in ("winograd_input_transform", "winograd_input_transform_backward",
                 "winograd_output_transform", "winograd_output_transform_backward"):
        monkeypatch.setattr(NK, name, fail)
    layer = nn.Conv2d(2, 3, 3, padding=1, algorithm="winograd").astype("float64")
    with config.using(numba=False):
        assert kernels.describe(layer, (2, 2, 5, 5), "float64") == "Winograd F(2x2, 3x3)"
        y = layer(rng_input((2, 2, 5, 5)))
        layer.backward(numpy.ones_like(y))


# ---------------------------------------------------------------------------- the choice
def count_winograd_calls(monkeypatch):
    calls = []
    real = W.conv_forward

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(W, "conv_forward", spy)
    return calls


def is_winograd(layer, x) -> bool:
    return isinstance(kernels.choose(layer, x), W.WinogradConv)


@pytest.mark.parametrize("kwargs, on_numpy", [
    ({"kernel_size": 3}, True),
    ({"kernel_size": 3, "padding": 1}, True),
    ({"kernel_size": 3, "padding": 1, "groups": 2}, True),
    ({"kernel_size": 5, "padding": 2}, True),
    ({"kernel_size": 5, "padding": 2, "groups": 2}, True),
    ({"kernel_size": 3, "stride": 2, "padding": 1}, False),
    ({"kernel_size": (3, 1)}, False),
    ({"kernel_size": 1}, False),
], ids=str)
def test_auto_picks_winograd_for_3x3_and_5x5_stride_1_on_numpy(kwargs, on_numpy, xp, monkeypatch):
    layer = nn.Conv2d(2, 4, **kwargs).to("cpu" if xp is numpy else "cuda")
    x = xp.zeros((1, 2, 7, 7), dtype=numpy.float32)
    expected = on_numpy and xp is numpy   # CuPy: im2col until Winograd is timed on a GPU
    assert layer.algorithm == "auto" and config.current().conv == "auto"
    assert is_winograd(layer, x) == expected
    calls = count_winograd_calls(monkeypatch)
    layer(x)
    assert len(calls) == expected, "forward must run the chosen implementation"


def test_the_conv_setting_overrides_auto_only(monkeypatch):
    x = numpy.zeros((1, 2, 6, 6), dtype=numpy.float32)
    auto, five = nn.Conv2d(2, 3, 3), nn.Conv2d(2, 3, 5)
    with config.using(conv="im2col"):
        assert not is_winograd(auto, x)
        calls = count_winograd_calls(monkeypatch)
        auto(x)
        assert not calls, "conv='im2col' must keep Winograd off"
        # An explicit algorithm is not overridden.
        assert is_winograd(nn.Conv2d(2, 3, 3, algorithm="winograd"), x)
    with config.using(conv="winograd"):
        assert is_winograd(auto, x) and is_winograd(five, x)
        assert not is_winograd(nn.Conv2d(2, 3, 3, algorithm="im2col"), x)
        # Forcing Winograd reaches 5x5 and never breaks a layer it cannot compute.
        seven = nn.Conv2d(2, 3, 7)
        assert not is_winograd(seven, numpy.zeros((1, 2, 8, 8), dtype=numpy.float32))
        assert seven(numpy.zeros((1, 2, 8, 8), dtype=numpy.float32)).shape == (1, 3, 2, 2)
    with config.reference():
        assert kernels.choose(nn.Conv2d(2, 3, 3, algorithm="winograd"), x) is None   # every fast path off


@pytest.mark.parametrize("kwargs", [{"kernel_size": 7}, {"kernel_size": 3, "stride": 2}, {"kernel_size": (3, 2)}],
                         ids=str)
def test_winograd_where_it_does_not_apply_raises_at_forward(kwargs):
    layer = nn.Conv2d(2, 3, algorithm="winograd", **kwargs)   # the constructor accepts it ...
    with pytest.raises(ValueError, match=r"Conv2d\(.*algorithm 'winograd' needs a 3x3 or 5x5 kernel with stride 1"):
        layer(numpy.zeros((1, 2, 7, 7), dtype=numpy.float32))   # ... the forward names the problem


@pytest.mark.parametrize("name", ["fft", "Winograd", "", None])
def test_unknown_algorithm_is_rejected_by_the_constructor(name):
    with pytest.raises(ValueError, match=r"algorithm must be one of auto, im2col, winograd"):
        nn.Conv2d(2, 3, 3, algorithm=name)


def test_repr_names_a_chosen_algorithm():
    assert "algorithm='winograd'" in repr(nn.Conv2d(2, 3, 3, algorithm="winograd"))
    assert "algorithm" not in repr(nn.Conv2d(2, 3, 3))


# ---------------------------------------------------------------------------- input_grad=False
@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
@pytest.mark.parametrize("bias", [True, False])
def test_input_grad_false_skips_dx_and_keeps_parameter_gradients(algorithm, bias, monkeypatch):
    layer = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=bias, algorithm=algorithm).astype("float64")
    x = rng_input((3, 4, 6, 5), seed=13)
    g = rng_input(layer.output_shape(x.shape), seed=14)
    y, dx, dw, db = run(layer, x, g)
    assert dx is not None

    def fail(*args, **kwargs):
        raise AssertionError("the input gradient was computed although input_grad=False")

    # The point of the flag is the skipped work (a GEMM and a col2im/untiling), on every path.
    monkeypatch.setattr(conv_module, "col2im", fail)
    monkeypatch.setattr(NK, "col2im", fail)
    monkeypatch.setattr(W, "input_transform_backward", fail)
    y2, dx2, dw2, db2 = run(layer, x, g, input_grad=False)
    assert dx2 is None
    numpy.testing.assert_array_equal(y2, y)
    numpy.testing.assert_allclose(dw2, dw, rtol=1e-13, atol=1e-15)
    if bias:
        numpy.testing.assert_allclose(db2, db, rtol=1e-13, atol=1e-15)


def test_model_backward_without_input_grad_gives_the_same_parameter_gradients():
    # The CIFAR net: conv1 (3x3 stride 2) runs im2col, conv2-5 Winograd; width 0.25 keeps it small.
    model = alexnet("cifar", width=0.25, dropout=0.0).astype("float64")
    x = rng_input((2, 3, 32, 32), seed=15)
    g = rng_input((2, 10), seed=16)
    seen = []
    model.features[0].register_full_backward_hook(lambda mod, gi, go: seen.append((gi, go.shape)))
    model(x)
    dx = model.backward(g)
    assert dx is not None and dx.shape == x.shape
    expected = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    model(x)
    assert model.backward(g, input_grad=False) is None
    for name, p in model.named_parameters():
        numpy.testing.assert_allclose(p.grad, expected[name], rtol=1e-12, atol=1e-15, err_msg=name)
    # The hook fired for both backwards, with no input gradient the second time.
    assert len(seen) == 2
    assert seen[0][0] is not None and seen[1][0] is None
    assert seen[1][1] == (2, 16, 16, 16)


# ---------------------------------------------------------------------------- buffer reuse
@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
@pytest.mark.parametrize("first_shape", [(2, 3, 6, 7), (3, 3, 8, 5)], ids=["same-shape", "other-shape"])
def test_backward_uses_the_latest_forward(first_shape, algorithm, numba):
    with config.using(numba=numba, buffer_pool=True):
        _backward_uses_the_latest_forward(first_shape, algorithm)


def _backward_uses_the_latest_forward(first_shape, algorithm):
    layer = nn.Conv2d(3, 4, 3, padding=1, algorithm=algorithm).astype("float64")
    fresh = nn.Conv2d(3, 4, 3, padding=1, algorithm=algorithm).astype("float64")
    fresh.load_state_dict(layer.state_dict())
    x1, x2 = rng_input(first_shape, seed=17), rng_input((2, 3, 6, 7), seed=18)
    g = rng_input((2, 4, 6, 7), seed=19)
    y1 = layer(x1)
    y1_copy = y1.copy()
    y2 = layer(x2)
    # The buffers the second forward took are not the first output's: it is intact.
    numpy.testing.assert_array_equal(y1, y1_copy)
    dx = layer.backward(g)
    y_ref, dx_ref, dw_ref, db_ref = run(fresh, x2, g)
    numpy.testing.assert_allclose(y2, y_ref, rtol=1e-13, atol=1e-15)
    numpy.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-15)
    numpy.testing.assert_allclose(layer.weight.grad, dw_ref, rtol=1e-13, atol=1e-15)
    numpy.testing.assert_allclose(layer.bias.grad, db_ref, rtol=1e-13, atol=1e-15)
    # Nor does a later step overwrite a returned input gradient.
    dx_copy = dx.copy()
    layer(x2)
    layer.backward(2 * g)
    numpy.testing.assert_array_equal(dx, dx_copy)


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
def test_backward_leaves_the_upstream_gradient_alone(algorithm):
    layer = nn.Conv2d(2, 3, 3, padding=1, algorithm=algorithm).astype("float64")
    g = rng_input((2, 3, 5, 5), seed=20)
    g_before = g.copy()
    layer(rng_input((2, 2, 5, 5), seed=21))
    layer.backward(g)
    numpy.testing.assert_array_equal(g, g_before)


# ---------------------------------------------------------------------------- the other tiles
@pytest.mark.parametrize("spec", [W.F23, W.F43, W.F25, W.F35], ids=lambda s: f"F{s.m}-{s.r}")
def test_every_tile_computes_the_valid_correlation(spec):
    """1-D and 2-D: AT [(G g) * (BT d)] is the valid correlation of an alpha-tile with an r-filter."""
    rng = numpy.random.default_rng(1)
    a, m, r = spec.alpha, spec.m, spec.r
    d, g = rng.standard_normal((a, a)), rng.standard_normal((r, r))
    y = spec.AT @ ((spec.G @ g @ spec.G.T) * (spec.BT @ d @ spec.BT.T)) @ spec.AT.T
    direct = numpy.array([[(d[i:i + r, j:j + r] * g).sum() for j in range(m)] for i in range(m)])
    numpy.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)
    flat = spec.AA @ ((spec.GG @ g.reshape(-1)) * (spec.BB @ d.reshape(-1)))
    numpy.testing.assert_allclose(flat.reshape(m, m), direct, rtol=1e-12, atol=1e-12)
    assert spec.multiply_ratio() == pytest.approx((m * r) ** 2 / a ** 2)   # 2.25 for F(2x2, 3x3)


def test_f23_is_the_papers_matrices():
    numpy.testing.assert_array_equal(W.BT, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    numpy.testing.assert_array_equal(W.AT, [[1, 1, 1, 0], [0, 1, -1, -1]])
    # The constructed tiles take the points 0, 1, -1, 2, -1/2 (winograd.POINTS) and infinity:
    # AT's rows are their powers, its last column the point at infinity.
    numpy.testing.assert_array_equal(W.F43.AT[:, :5], [[1, 1, 1, 1, 1], [0, 1, -1, 2, -0.5],
                                                       [0, 1, 1, 4, 0.25], [0, 1, -1, 8, -0.125]])
    numpy.testing.assert_array_equal(W.F43.AT[:, 5], [0, 0, 0, 1])


# F(4x4, 3x3), F(2x2, 5x5) and F(3x3, 5x5) lose 5-20x more to float32 rounding than F(2x2, 3x3)
# (winograd.POINTS): float32 is checked against torch at 3e-5 on the output scale instead of 1e-5.
TILE_CASES = [
    # (tile m, kernel, in, out, padding, groups, N, H, W)
    (4, 3, 3, 5, 1, 1, 2, 4, 4),
    (4, 3, 4, 6, 0, 2, 1, 9, 7),
    (4, 3, 2, 3, 2, 1, 3, 8, 5),
    (2, 5, 3, 4, 2, 1, 2, 7, 7),
    (2, 5, 4, 4, 0, 2, 1, 9, 10),
    (2, 5, 2, 3, 1, 1, 2, 6, 5),
    (3, 5, 3, 4, 2, 1, 2, 9, 9),          # the tiles cover the output exactly
    (3, 5, 4, 4, 2, 2, 1, 8, 10),         # overhanging tiles, groups=2
    (3, 5, 2, 3, 0, 1, 2, 7, 6),
]


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("case", TILE_CASES, ids=lambda c: f"F{c[0]}-{c[1]}_{c[2]}x{c[3]}p{c[4]}g{c[5]}_{c[7]}x{c[8]}")
def test_other_tiles_match_torch(case, dtype, xp):
    m, k, cin, cout, p, groups, n, h, w = case
    layer = nn.Conv2d(cin, cout, k, padding=p, groups=groups, algorithm="winograd")
    layer.winograd_tile = m
    assert W.spec_for(layer) is W.SPECS[(m, k)]
    ref = torch.nn.Conv2d(cin, cout, k, padding=p, groups=groups)
    x = numpy.random.default_rng(2).standard_normal((n, cin, h, w))
    tolerance = None if dtype == numpy.float64 else (3e-5, 5e-5)
    check_against_torch(layer, ref, x, xp=xp, dtype=dtype, tolerance=tolerance)


def test_f35_is_what_winograd_and_auto_mean_for_5x5():
    x = numpy.zeros((1, 2, 9, 9), dtype=numpy.float32)
    assert W.spec_for(nn.Conv2d(2, 3, 5, algorithm="winograd")) is W.F35
    assert is_winograd(nn.Conv2d(2, 3, 5, padding=2), x)
    assert kernels.describe(nn.Conv2d(2, 3, 5, padding=2), x.shape).startswith("Winograd F(3x3, 5x5)")
    five = nn.Conv2d(2, 3, 5, padding=2)
    five.winograd_tile = 2
    assert W.spec_for(five) is W.F25
    assert not is_winograd(nn.Conv2d(2, 3, 5, stride=2), x)
    assert W.spec_for(nn.Conv2d(2, 3, 3)) is W.F23


def test_unknown_tile_raises():
    layer = nn.Conv2d(2, 3, 5, algorithm="winograd")
    layer.winograd_tile = 4
    with pytest.raises(ValueError, match=r"no Winograd tile F\(4, 5\)"):
        layer(numpy.zeros((1, 2, 8, 8), dtype=numpy.float32))


def _winograd_conv(spec, x, w, b, g, padding, groups):
    """(y, dx, weight and bias gradients) of the library's Winograd convolution with tile ``spec``, as copies."""
    y, cache = W.conv_forward(x, w, b, padding, groups, spec=spec, numba=NK.AVAILABLE)
    y = numpy.array(y)
    weight, bias = nn.Parameter(w.copy()), nn.Parameter(b.copy())
    dx = numpy.array(W.conv_backward(g, cache, weight, bias, padding, groups))
    return {"y": y, "dx": dx, "weight": numpy.array(weight.grad), "bias": numpy.array(bias.grad)}


def _float32_layer(r, seed=0):
    """A float32 layer as a net has it: post-ReLU inputs, fan-in scaled weights."""
    rng = numpy.random.default_rng(seed)
    cin, cout, groups, size = (32, 64, 2, 15) if r == 5 else (64, 64, 1, 13)
    x = numpy.maximum(rng.standard_normal((4, cin, size, size)), 0).astype(numpy.float32)
    w = (rng.standard_normal((cout, cin // groups, r, r)) / numpy.sqrt(cin // groups * r * r)).astype(numpy.float32)
    b = (0.1 * rng.standard_normal(cout)).astype(numpy.float32)
    g = rng.standard_normal((4, cout, size, size)).astype(numpy.float32)
    return (x, w, b, g), (r // 2, r // 2), groups


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (2, 5), (3, 5)])
def test_float32_error_of_each_tile_stays_within_the_rounding_bound(m, r):
    """|fl(f) - f| <= gamma_K * |f|_abs element by element, where |f|_abs is the same computation
    with every matrix and operand replaced by its absolute value (the standard componentwise bound
    of a chain of products and sums; Higham 2002, Section 3.5). It holds on every processor,
    whatever the summation order and FMA use, so no tolerance here was measured on a machine."""
    spec = W.SPECS[(m, r)]
    (x, w, b, g), padding, groups = _float32_layer(r)
    ours = _winograd_conv(spec, x, w, b, g, padding, groups)
    exact = _winograd_conv(spec, *(a.astype(numpy.float64) for a in (x, w, b, g)), padding, groups)
    magnitude = rounding.winograd_magnitudes(spec, x, w, b, g, padding, groups)
    cin, cout = x.shape[1], w.shape[0]
    _, _, th, tw = W.tile_counts(x.shape[2], x.shape[3], padding, spec)
    depths = rounding.winograd_depths(spec, cin // groups, cout // groups, x.shape[0] * th * tw)
    for name, depth in depths.items():
        bound = gamma(depth, numpy.float32) * magnitude[name]
        excess = numpy.abs(ours[name] - exact[name]) - bound
        assert excess.max() <= 0, (f"F({m}, {r}) {name}: an error {excess.max():.1e} above its bound "
                                   f"gamma_{depth} * |{name}|_abs")
        # A worst case, far above the typical error, but still a few percent of the result's scale at
        # most; the sharper checks are the comparison of point sets below and the one against torch.
        assert bound.max() < 3e-2 * numpy.abs(exact[name]).max()


#: Lavin and Gray's interpolation points: -2 where :data:`npalexnet.kernels.winograd.POINTS` has -1/2.
LAVIN_GRAY_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5)


@pytest.mark.parametrize("m, r", [(4, 3), (2, 5)])
def test_our_points_are_more_accurate_than_lavin_and_grays(m, r):
    """The property the choice of points is for, measured on this machine for both point sets at
    once, so it holds wherever the suite runs: the root-mean-square float32 error of y, dx and dw
    with -1/2 is below the error with Lavin and Gray's -2 (Barabasz et al. 2020). F(2x2, 3x3) needs
    only 0 and +-1; F(3x3, 5x5)'s six points have no better-known alternative (benchmarks/RESULTS.md)."""
    (x, w, b, g), padding, groups = _float32_layer(r)
    exact = _winograd_conv(W.SPECS[(m, r)], *(a.astype(numpy.float64) for a in (x, w, b, g)), padding, groups)

    def rms_errors(spec):
        result = _winograd_conv(spec, x, w, b, g, padding, groups)
        return {k: float(numpy.sqrt(numpy.mean((result[k] - exact[k]) ** 2) / numpy.mean(exact[k] ** 2)))
                for k in ("y", "dx", "weight")}

    ours, theirs = rms_errors(W.SPECS[(m, r)]), rms_errors(W.make_spec(m, r, LAVIN_GRAY_POINTS))
    for name in ours:
        assert ours[name] < theirs[name], f"F({m}, {r}) {name}: {ours[name]:.2e} >= Lavin and Gray's {theirs[name]:.2e}"
