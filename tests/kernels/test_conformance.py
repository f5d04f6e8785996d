"""The conformance suite: every fast implementation of every seam against its layer's reference.

For each registered implementation (:func:`npalexnet.kernels.implementations`),
each case of its seam, each memory layout of the input and each dtype, the
implementation must be the one :func:`npalexnet.kernels.choose` picks under
some setting, and its forward output, input gradient and parameter gradients
must equal the layer's reference code (``config.reference()``, run in float64
on the same numbers) within the rounding bound of their arithmetic
(:mod:`tests.kernels.rounding`), or exactly where the math is exact (max,
ReLU's mask). Backends: NumPy; the CUDA implementations on the CPU emulator
of their kernels (their C++ compilation), and on CuPy where a GPU exists.
"""

from __future__ import annotations

import copy
import itertools

import numpy
import pytest

import npalexnet
from npalexnet import config, kernels, nn, optim
from npalexnet.gradcheck import gamma
from npalexnet.kernels import cuda_kernels as ck
from npalexnet.kernels import cuda_layers
from tests.kernels import cuda_emulator, rounding

DTYPES = [numpy.float32, numpy.float64]

#: Settings tried, in order, to find one under which ``choose`` picks an implementation: each setting
#: both ways, so that every implementation is reached whatever the defaults (the CUDA kernels on, the
#: CPU ones then reached on the emulated GPU's NumPy arrays with them off).
SETTINGS = [{}, {"conv": "im2col"}, {"conv": "winograd"}, {"cuda_kernels": True},
            {"cuda_kernels": True, "conv": "im2col"}, {"cuda_kernels": False},
            {"cuda_kernels": False, "conv": "im2col"}, {"cuda_kernels": False, "conv": "winograd"}]


def conv(cin, cout, k, stride=1, padding=0, groups=1, tile=None):
    layer = nn.Conv2d(cin, cout, k, stride, padding, groups=groups)
    layer.winograd_tile = tile
    return layer


#: seam -> [(id, layer factory, input shape)]
CASES = {
    "conv2d": [
        ("3x3", lambda: conv(3, 4, 3, padding=1), (2, 3, 7, 7)),
        ("3x3-groups-overhang", lambda: conv(4, 6, 3, padding=0, groups=2), (2, 4, 8, 9)),
        ("5x5-groups", lambda: conv(4, 6, 5, padding=2, groups=2), (2, 4, 9, 8)),
        ("F43", lambda: conv(3, 4, 3, padding=1, tile=4), (2, 3, 9, 10)),
        ("F25", lambda: conv(3, 4, 5, padding=1, tile=2), (2, 3, 8, 7)),
        ("nonsquare-strided", lambda: conv(3, 4, (3, 2), (2, 1), (1, 0)), (2, 3, 8, 9)),
        ("paper-conv1", lambda: conv(3, 8, 11, 4, 2), (2, 3, 31, 31)),
        ("1x1", lambda: conv(5, 3, 1), (3, 5, 4, 4)),
        ("batch-1", lambda: conv(3, 4, 3, padding=1), (1, 3, 6, 5)),
        ("batch-1-strided", lambda: conv(3, 4, 3, 2, 1), (1, 3, 7, 7)),
    ],
    "max_pool2d": [
        ("3/2", lambda: nn.MaxPool2d(3, 2), (2, 3, 9, 9)),
        ("3/2-pad", lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 8, 7)),
        ("2/2", lambda: nn.MaxPool2d(2), (2, 4, 8, 8)),
        ("3/1-overlap", lambda: nn.MaxPool2d(3, 1, 1), (1, 2, 6, 5)),
        ("nonsquare", lambda: nn.MaxPool2d((3, 2), (2, 1)), (2, 2, 7, 6)),
        ("batch-1", lambda: nn.MaxPool2d(3, 2), (1, 3, 9, 9)),
    ],
    "lrn": [
        ("paper", lambda: nn.LocalResponseNorm.from_paper(), (2, 7, 5, 4)),
        ("even-size-pow", lambda: nn.LocalResponseNorm(4, 1e-2, 0.6, 1.0), (2, 5, 3, 4)),
        ("few-channels", lambda: nn.LocalResponseNorm(5, 0.1, 0.75, 1.0), (3, 3, 4, 5)),
        ("batch-1", lambda: nn.LocalResponseNorm.from_paper(), (1, 7, 3, 3)),
    ],
    "relu": [
        ("4d", nn.ReLU, (2, 3, 5, 4)),
        ("2d", nn.ReLU, (6, 9)),
        ("batch-1", nn.ReLU, (1, 3, 5, 4)),
        ("2d-batch-1", nn.ReLU, (1, 9)),
    ],
    "linear": [
        ("fc", lambda: nn.Linear(12, 7), (5, 12)),
        ("no-bias", lambda: nn.Linear(9, 4, bias=False), (3, 9)),
        ("batch-1", lambda: nn.Linear(12, 7), (1, 12)),
    ],
    "dropout": [
        ("p0.5", lambda: nn.Dropout(0.5), (4, 16)),
        ("p0.3-4d", lambda: nn.Dropout(0.3), (2, 3, 4, 4)),
    ],
}

LAYOUTS = ["c-order", "transposed-memory", "strided"]


def in_layout(host, layout, xp):
    """``host`` on ``xp`` in a memory layout (same values)."""
    if layout == "c-order":
        return xp.asarray(host)
    if layout == "transposed-memory":   # (N, C, ...) view of (C, N, ...) memory, what the fast paths pass on
        return xp.ascontiguousarray(xp.asarray(host).swapaxes(0, 1)).swapaxes(0, 1)
    wide = numpy.full(host.shape[:-1] + (2 * host.shape[-1],), 1e30, dtype=host.dtype)   # every other column
    wide[..., ::2] = host
    return xp.asarray(wide)[..., ::2]


@pytest.fixture(params=["numpy", pytest.param("emulated-cuda", marks=pytest.mark.skipif(
    cuda_emulator.compiler() is None, reason="no C++ compiler to emulate the CUDA kernels")),
    pytest.param("cupy", marks=pytest.mark.gpu)])
def backend_xp(request, monkeypatch):
    """The array module, and which implementations can run on it."""
    if request.param == "emulated-cuda":
        monkeypatch.setattr(ck, "launcher", cuda_emulator.EmulatedLauncher())
        monkeypatch.setattr(cuda_layers, "_on_gpu_float", lambda x: x.dtype.char in "fd")
        return numpy, "cuda"
    if request.param == "cupy":
        import cupy
        return cupy, "cuda"
    return numpy, "cpu"


def implementation_cases():
    for impl in kernels.implementations():
        for case_id, factory, shape in CASES.get(impl.seam, ()):
            yield pytest.param(impl, factory, shape, id=f"{impl.seam}[{impl.name}]-{case_id}")


def settings_choosing(impl, layer, x):
    """Settings under which ``choose(layer, x)`` is ``impl``, or None."""
    for changes in SETTINGS:
        with config.using(**changes) as settings:
            try:
                if kernels.choose(layer, x, settings) is impl:
                    return changes
            except ValueError:
                continue
    return None


def error_bounds(impl, layer, x, g, dtype):
    """Elementwise bounds on |fast - exact| for each result, or None where it must be exact."""
    seam = layer.seam
    if seam == "conv2d":
        if impl.name == "Winograd":
            return rounding.winograd_layer_bounds(layer, x, g, dtype)
        return rounding.bounds(rounding.conv_depths(layer, x.shape), rounding.magnitudes(layer, x, g), dtype)
    if seam == "linear":
        return rounding.bounds(rounding.linear_depths(layer, x.shape), rounding.magnitudes(layer, x, g), dtype)
    if seam == "max_pool2d":   # the max is exact; dx sums at most ceil(K/S)^2 routed gradients
        (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
        with config.reference():
            twin = copy.deepcopy(layer)
            twin(numpy.asarray(npalexnet.asnumpy(x), dtype=numpy.float64))
            routed = twin.backward(numpy.abs(npalexnet.asnumpy(g)).astype(numpy.float64))
        return {"y": None, "dx": gamma(-(-kh // sh) * -(-kw // sw), dtype) * routed}
    if seam == "relu":
        return {"y": None, "dx": None}
    if seam == "dropout":   # x * mask * scale: one rounding of the scale and one of the product
        return {"y": gamma(2, dtype) * numpy.abs(npalexnet.asnumpy(x)) * 2.0,
                "dx": gamma(2, dtype) * numpy.abs(npalexnet.asnumpy(g)) * 2.0}
    if seam == "lrn":
        return lrn_bounds(layer, x, g, dtype)
    raise AssertionError(f"no bound for seam {seam}")


def lrn_bounds(layer, x, g, dtype):
    """LRN: s = k + alpha/n sum x^2 over n channels (n + 2 roundings), s^-beta (a few more: pow, or
    reciprocal square roots refined by Newton), y = x s^-beta; dx sums two products over the window
    of n channels. Relative to the magnitudes |y| and |dY| s^-beta + 2 alpha beta / n |x| sum |dY x| s^(-beta-1)."""
    x64, g64 = (numpy.asarray(npalexnet.asnumpy(a), dtype=numpy.float64) for a in (x, g))
    n, a, b = layer.size, layer.alpha, layer.beta
    s = layer.k + a / n * nn.normalization.channel_window_sum(x64 * x64, n // 2, (n - 1) // 2)
    window = nn.normalization.channel_window_sum(numpy.abs(g64 * x64) * s ** (-b - 1), (n - 1) // 2, n // 2)
    depth = 2 * n + 16   # the window sums, the power, the products; doubled for the power's own error
    return {"y": gamma(depth, dtype) * numpy.abs(x64) * s ** -b,
            "dx": gamma(2 * depth, dtype) * (numpy.abs(g64) * s ** -b + 2 * a * b / n * numpy.abs(x64) * window)}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("impl, factory, shape", list(implementation_cases()))
def test_implementation_equals_the_reference(impl, factory, shape, layout, dtype, backend_xp):
    xp, device = backend_xp
    npalexnet.manual_seed(0)
    layer = factory().astype(dtype)
    if device == "cuda" and xp is not numpy:
        layer.to("cuda")
    rng = numpy.random.default_rng(7)
    x_host = rng.standard_normal(shape).astype(dtype)
    x = in_layout(x_host, layout, xp)
    changes = settings_choosing(impl, layer, x)
    if changes is None:
        pytest.skip(f"{impl!r} does not apply to this case, layout or backend")
    g_host = rng.standard_normal(layer.output_shape(shape)).astype(dtype)
    g = in_layout(g_host, "transposed-memory" if len(shape) > 1 else "c-order", xp)

    npalexnet.manual_seed(1)   # the same dropout mask in both runs
    with config.using(**changes):
        fast = rounding.run(layer, x, g)
    exact_layer = copy.deepcopy(layer).astype(numpy.float64).to("cpu")
    npalexnet.manual_seed(1)
    with config.reference():
        exact = rounding.run(exact_layer, x_host.astype(numpy.float64), g_host.astype(numpy.float64))
    assert set(fast) == set(exact)
    limits = error_bounds(impl, layer, x_host.astype(numpy.float64), g_host.astype(numpy.float64), dtype)
    for name in exact:
        bound = limits.get(name)
        if bound is None:   # exact arithmetic: the results are the reference's, cast to the dtype
            numpy.testing.assert_array_equal(fast[name], exact[name].astype(dtype), err_msg=name)
            continue
        excess = numpy.abs(fast[name] - exact[name]) - bound - gamma(64, numpy.float64) * numpy.abs(exact[name])
        assert excess.max() <= 0, f"{name}: {excess.max():.2e} above the rounding bound (max bound {bound.max():.2e})"


@pytest.mark.parametrize("impl", [i for i in kernels.implementations() if i.seam != "sgd"], ids=repr)
def test_every_implementation_is_tested_on_some_case(impl, backend_xp):
    """No implementation escapes the suite: on its device, some case in some layout chooses it."""
    xp, device = backend_xp
    if device not in impl.devices:
        pytest.skip("runs on another device")
    claimed = []
    for (_, factory, shape), layout in itertools.product(CASES[impl.seam], LAYOUTS):
        layer = factory()
        if xp is not numpy:
            layer.to("cuda")
        x = in_layout(numpy.ones(shape, numpy.float32), layout, xp)
        claimed.append(settings_choosing(impl, layer, x) is not None)
    assert any(claimed), f"{impl!r} applies to none of the cases of {impl.seam}"


@pytest.mark.parametrize("seam", sorted(CASES))
def test_every_seam_with_cases_has_an_implementation_and_every_implementation_has_cases(seam):
    assert kernels.implementations(seam), f"no implementation registered for {seam}"
    assert {impl.seam for impl in kernels.implementations()} - {"sgd"} <= set(CASES)


@pytest.mark.parametrize("seam, factory, shape", [("max_pool2d", lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 9, 8)),
                                                   ("relu", nn.ReLU, (2, 3, 5, 6))])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_ties_and_nan_are_handled_as_the_reference_does(seam, factory, shape, dtype):
    """Ties go to the first maximum, a NaN always wins and stays NaN, in every implementation."""
    rng = numpy.random.default_rng(3)
    x = numpy.round(rng.standard_normal(shape)).astype(dtype)   # many ties, many zeros
    x.reshape(-1)[rng.choice(x.size, x.size // 8, replace=False)] = numpy.nan
    layer = factory()
    g = rng.standard_normal(layer.output_shape(shape)).astype(dtype)
    with config.reference():
        y_ref, dx_ref = layer(x), layer.backward(g)
    for impl in kernels.implementations(seam):
        if impl.applies(layer, x, config.current()):
            y, dx = layer(x), layer.backward(g)
            numpy.testing.assert_array_equal(y, y_ref)
            numpy.testing.assert_allclose(dx, dx_ref, rtol=gamma(9, dtype), atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("hyper", [dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
                                   dict(lr=0.01, momentum=0.9, dampening=0.1),
                                   dict(lr=0.02, momentum=0.5, weight_decay=1e-2)])
def test_the_sgd_update_equals_the_reference(hyper, dtype):
    """The fused numba update makes the reference's operations per element, in its order."""
    rng = numpy.random.default_rng(5)
    start = rng.standard_normal((5, 7)).astype(dtype)
    grads = [rng.standard_normal((5, 7)).astype(dtype) for _ in range(4)]
    results = {}
    for mode in ("fast", "reference"):
        p = nn.Parameter(start.copy())
        opt = optim.SGD([p], **hyper)
        with config.using(fast_paths=mode == "fast"):
            for g in grads:
                p.grad = g.copy()
                assert (kernels.choose(opt, p) is not None) == (mode == "fast")
                opt.step()
        results[mode] = p.data
    # the same operations in the same order: a few roundings of terms of the parameter's size at most
    scale = numpy.abs(start) + sum(numpy.abs(g) for g in grads) * hyper["lr"] * 4
    assert numpy.all(numpy.abs(results["fast"] - results["reference"]) <= gamma(8, dtype) * scale)


def test_implementations_are_chosen_in_one_place_by_the_settings():
    layer = nn.Conv2d(3, 4, 3, padding=1)
    x = numpy.zeros((1, 3, 6, 6), numpy.float32)
    names = {}
    for changes in ({}, {"conv": "im2col"}, {"numba": False, "conv": "im2col"}, {"fast_paths": False}):
        with config.using(**changes):
            impl = kernels.choose(layer, x)
            names[tuple(changes.items())] = None if impl is None else type(impl).__name__
    assert names == {(): "WinogradConv", (("conv", "im2col"),): "Im2colConv",
                     (("numba", False), ("conv", "im2col")): None, (("fast_paths", False),): None}
