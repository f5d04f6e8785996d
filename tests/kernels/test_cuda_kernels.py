"""The CUDA kernels against the array code they replace, and the switch that turns them on.

Without a GPU, three checks cover the kernels' source itself:

* ``emulator`` (and ``emulator-ix64``, the 64-bit thread-index variant): the
  kernels' own CUDA source compiled as C++ for the CPU
  (``tests/kernels/cuda_emulator.py``; skipped without a C++ compiler).
  Every thread of a launch runs, on NumPy arrays passed as poisoned memory
  images, so wrong index arithmetic, strides, unwritten outputs and
  out-of-bounds accesses all show up, and every argument is checked
  against the kernel's C signature.
* NVRTC, the compiler CuPy uses, compiles the same source for sm_80/sm_90
  without warnings (skipped without libnvrtc; the torch wheel brings it).
* The real ``CupyLauncher`` runs on a stand-in ``cupy`` whose kernels run
  on the emulator.

With a GPU (``cupy``, ``@pytest.mark.gpu``, skipped with a reason elsewhere;
``benchmarks/gpu_all.sh`` runs them) the same kernel tests run on CuPy arrays.

The reference is always the array code on NumPy in the same dtype:
copies (im2col, max-pool values and indices, ReLU) must match exactly,
sums (col2im, max-pool backward, LRN) to a per-dtype tolerance, since the
kernels add in a different order (and the GPU contracts multiply-adds).
"""

from __future__ import annotations

import numpy
import pytest

import npalexnet
from npalexnet import nn
from npalexnet import config, kernels, optim
from npalexnet.kernels import cuda_layers
from npalexnet.kernels import cuda_kernels as ck
from npalexnet.nn import im2col as K
from tests.kernels import cuda_emulator

DTYPES = [numpy.float32, numpy.float64]
#: Relative tolerance (on max|a-b| / max|b|) for results that are sums.
SUM_TOL = {numpy.float32: 2e-6, numpy.float64: 1e-14}

needs_compiler = pytest.mark.skipif(cuda_emulator.compiler() is None,
                                    reason="no C++ compiler (g++/c++) to emulate the CUDA kernels on the CPU")


@pytest.fixture(params=[pytest.param("emulator", marks=needs_compiler),
                        pytest.param("emulator-ix64", marks=needs_compiler),
                        pytest.param("cupy", marks=pytest.mark.gpu)])
def kxp(request, monkeypatch):
    """The array module the kernels run on; the emulator is installed as the launcher.

    ``emulator`` uses 32-bit thread indices as the GPU does for these sizes;
    ``emulator-ix64`` forces the 64-bit variant used for huge launches.
    """
    if request.param.startswith("emulator"):
        ix = "int64" if request.param.endswith("ix64") else None
        monkeypatch.setattr(ck, "launcher", cuda_emulator.EmulatedLauncher(ix=ix))
        return numpy
    import cupy
    return cupy


def to_host(a):
    return numpy.asarray(npalexnet.asnumpy(a))


def assert_close(ours, ref, dtype, what=""):
    ours, ref = to_host(ours), to_host(ref)
    assert ours.shape == ref.shape, what
    assert ours.dtype == ref.dtype, what
    assert not numpy.isnan(ours).any(), f"{what}: NaN in the result (unwritten or wrongly read memory)"
    scale = max(float(numpy.max(numpy.abs(ref))), 1e-30) if ref.size else 1.0
    err = float(numpy.max(numpy.abs(ours - ref))) / scale if ref.size else 0.0
    assert err <= SUM_TOL[dtype], f"{what}: relative error {err:.3g} > {SUM_TOL[dtype]}"


LAYOUTS = ["nchw", "cnhw", "strided", "flipped"]


def on_device(xp, host, layout):
    """``host`` (a C-contiguous NumPy array) on ``xp`` with the given memory layout, same values."""
    if layout == "nchw":
        return xp.asarray(host)
    if layout == "cnhw":        # what conv and ReLU produce: (C, N, ...) memory
        return xp.ascontiguousarray(xp.asarray(host).swapaxes(0, 1)).swapaxes(0, 1)
    if layout == "strided":     # every other column of a wider array (the gaps hold garbage)
        wide = numpy.full(host.shape[:-1] + (2 * host.shape[-1],), 1e30, dtype=host.dtype)
        wide[..., ::2] = host
        return xp.asarray(wide)[..., ::2]
    if layout == "flipped":     # negative strides on the last two axes
        return xp.asarray(numpy.ascontiguousarray(host[..., ::-1, ::-1]))[..., ::-1, ::-1]
    raise ValueError(layout)


def random_geometry(seed, count, max_kernel=5, pool=False):
    """Random (N, C, H, W, kernel, stride, padding): odd sizes, non-square, stride != kernel."""
    rng = numpy.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        kh, kw = (int(v) for v in rng.integers(1, max_kernel + 1, 2))
        sh, sw = (int(v) for v in rng.integers(1, 5, 2))
        if pool:
            ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
        else:
            ph, pw = (int(v) for v in rng.integers(0, 3, 2))
        n, c = (int(v) for v in rng.integers(1, 4, 2))
        h, w = (int(v) for v in rng.integers(1, 14, 2))
        if K.conv_output_size(h, kh, sh, ph) >= 1 and K.conv_output_size(w, kw, sw, pw) >= 1:
            cases.append((n, c, h, w, (kh, kw), (sh, sw), (ph, pw)))
    return cases


# ----------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------

CONV_CASES = [
    (2, 3, 7, 7, (3, 3), (1, 1), (0, 0)),
    (2, 2, 8, 9, (3, 2), (2, 1), (1, 0)),
    (1, 4, 11, 11, (5, 5), (2, 2), (2, 2)),
    (3, 1, 6, 6, (2, 2), (3, 3), (0, 0)),      # stride > kernel: pixels in no window
    (1, 2, 3, 3, (3, 3), (1, 1), (1, 1)),
    (2, 3, 31, 31, (11, 11), (4, 4), (2, 2)),   # AlexNet conv1 geometry
    (2, 3, 27, 25, (11, 11), (4, 4), (0, 0)),   # rows/columns left over at the edge
    (1, 5, 9, 6, (1, 1), (1, 1), (0, 0)),
    (1, 3, 5, 13, (2, 5), (3, 2), (1, 2)),
    (2, 2, 4, 4, (3, 3), (1, 1), (2, 2)),       # padding as large as the kernel - 1
] + random_geometry(0, 8)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_im2col_matches_array_code(case, dtype, layout, kxp):
    n, c, h, w, kernel, stride, padding = case
    x = numpy.random.default_rng(1).standard_normal((n, c, h, w)).astype(dtype)
    col = ck.im2col(on_device(kxp, x, layout), kernel, stride, padding)
    ref = K.im2col(x, kernel, stride, padding)
    assert col.dtype == dtype and col.flags.c_contiguous
    numpy.testing.assert_array_equal(to_host(col), ref)


def test_im2col_writes_into_a_given_workspace(kxp):
    """The convolution's im2col matrix goes straight into its workspace (no second array and copy)."""
    x = numpy.random.default_rng(2).standard_normal((2, 3, 6, 5)).astype(numpy.float32)
    ref = K.im2col(x, (3, 3), (1, 1), (1, 1))
    workspace = kxp.full(ref.shape, numpy.nan, dtype=numpy.float32)
    assert ck.im2col(kxp.asarray(x), (3, 3), (1, 1), (1, 1), out=workspace) is workspace
    numpy.testing.assert_array_equal(to_host(workspace), ref)
    for wrong in (kxp.empty(ref.shape, numpy.float64), kxp.empty((ref.shape[0] + 1, ref.shape[1]), numpy.float32),
                  kxp.empty(ref.shape[::-1], numpy.float32).T):
        with pytest.raises(ValueError, match="im2col: out must be a C-contiguous"):
            ck.im2col(kxp.asarray(x), (3, 3), (1, 1), (1, 1), out=wrong)


@pytest.mark.parametrize("col_layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_col2im_matches_array_code(case, dtype, col_layout, kxp):
    n, c, h, w, kernel, stride, padding = case
    rows = c * kernel[0] * kernel[1]
    cols = n * K.conv_output_size(h, kernel[0], stride[0], padding[0]) * \
        K.conv_output_size(w, kernel[1], stride[1], padding[1])
    col = numpy.random.default_rng(2).standard_normal((rows, cols)).astype(dtype)
    dcol = kxp.asarray(col) if col_layout == "contiguous" else kxp.asarray(col.T.copy()).T
    dx = ck.col2im(dcol, (n, c, h, w), kernel, stride, padding)
    assert dx.shape == (n, c, h, w)
    assert_close(dx, K.col2im(col, (n, c, h, w), kernel, stride, padding), dtype, "col2im")


def test_col2im_counts_the_windows_covering_each_pixel(kxp):
    # col of ones: each pixel receives the number of windows that contain it.
    n, c, h, w, kernel, stride, padding = 1, 1, 9, 7, (3, 2), (2, 1), (1, 1)
    ones = numpy.ones((6, 5 * 8))
    dx = to_host(ck.col2im(kxp.asarray(ones), (n, c, h, w), kernel, stride, padding))
    numpy.testing.assert_array_equal(dx, K.col2im(ones, (n, c, h, w), kernel, stride, padding))


# ----------------------------------------------------------------------------
# Max-pooling
# ----------------------------------------------------------------------------

POOL_CASES = [
    (2, 3, 13, 13, (3, 3), (2, 2), (0, 0)),     # AlexNet's overlapping 3/2 pooling
    (2, 3, 8, 9, (2, 2), (2, 2), (0, 0)),       # non-overlapping, odd width rounds down
    (2, 3, 7, 6, (3, 2), (1, 2), (1, 1)),       # non-square, padding
    (1, 2, 10, 10, (3, 3), (3, 3), (1, 1)),
    (2, 2, 5, 5, (3, 3), (1, 1), (1, 1)),       # stride 1: every pixel in up to 9 windows
    (2, 3, 7, 7, (2, 2), (3, 3), (0, 0)),       # stride > kernel: pixels in no window
    (1, 2, 27, 27, (3, 3), (2, 2), (0, 0)),
    (1, 1, 17, 16, (16, 16), (1, 1), (0, 0)),   # 256 window positions: int32 argmax
] + random_geometry(3, 8, pool=True)


def pool_input(shape, kind, dtype, seed=0):
    rng = numpy.random.default_rng(seed)
    if kind == "tie_free":
        return (rng.permutation(int(numpy.prod(shape))).reshape(shape) / numpy.prod(shape) - 0.5).astype(dtype)
    if kind == "tied":         # few distinct values: many ties inside and across windows
        return rng.integers(-1, 2, shape).astype(dtype)
    if kind == "constant":
        return numpy.full(shape, -2.0, dtype=dtype)
    if kind == "nan_inf":      # the array code's rule: a NaN wins only as its window's first value
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.15] = numpy.nan
        x[rng.random(shape) < 0.1] = -numpy.inf
        return x.astype(dtype)
    raise ValueError(kind)


def array_code_pool(x, kernel, stride, padding, dy):
    """The reference max-pool: output, winners (as the layer keeps them) and input gradient."""
    pool = nn.MaxPool2d(kernel, stride, padding)
    with config.reference():
        y = pool(x)
        argmax = pool.argmax
        return y, argmax, pool.backward(dy)


@pytest.mark.parametrize("layout", ["nchw", "cnhw", "flipped"])
@pytest.mark.parametrize("kind", ["tie_free", "tied", "constant", "nan_inf"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool_matches_array_code(case, dtype, kind, layout, kxp):
    n, c, h, w, kernel, stride, padding = case
    x = pool_input((n, c, h, w), kind, dtype)
    oh = K.conv_output_size(h, kernel[0], stride[0], padding[0])
    ow = K.conv_output_size(w, kernel[1], stride[1], padding[1])
    dy = numpy.random.default_rng(5).standard_normal((n, c, oh, ow)).astype(dtype)
    y_ref, argmax_ref, dx_ref = array_code_pool(x, kernel, stride, padding, dy)

    out, argmax = ck.maxpool2d_forward(on_device(kxp, x, layout), kernel, stride, padding)
    assert out.shape == argmax.shape == (c, n, oh, ow)
    assert argmax.dtype == argmax_ref.dtype
    numpy.testing.assert_array_equal(to_host(out).transpose(1, 0, 2, 3), y_ref)
    numpy.testing.assert_array_equal(to_host(argmax), argmax_ref)

    dx = ck.maxpool2d_backward(on_device(kxp, dy, layout), argmax, (n, c, h, w), kernel, stride, padding)
    assert dx.shape == (n, c, h, w)
    assert_close(dx, dx_ref, dtype, "max-pool backward")


def test_maxpool_padding_reads_as_minus_infinity(kxp):
    x = numpy.full((1, 1, 3, 3), -1e30)
    out, argmax = ck.maxpool2d_forward(kxp.asarray(x), (3, 3), (1, 1), (1, 1))
    assert (to_host(out) == -1e30).all()
    numpy.testing.assert_array_equal(to_host(argmax)[0, 0], [[4, 3, 3], [1, 0, 0], [1, 0, 0]])


def test_maxpool_nan_always_wins_like_torch_and_the_array_code(kxp):
    x = numpy.zeros((1, 1, 2, 4))
    x[0, 0, 0, 0] = x[0, 0, 1, 3] = numpy.nan      # first of window 0; last of window 1
    out, argmax = ck.maxpool2d_forward(kxp.asarray(x), (2, 2), (2, 2), (0, 0))
    numpy.testing.assert_array_equal(to_host(out)[0, 0], [[numpy.nan, numpy.nan]])
    numpy.testing.assert_array_equal(to_host(argmax)[0, 0], [[0, 3]])


def test_maxpool_backward_sums_overlapping_windows(kxp):
    x = numpy.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0                 # wins all four overlapping 3/2 windows
    _, argmax = ck.maxpool2d_forward(kxp.asarray(x), (3, 3), (2, 2), (0, 0))
    dy = kxp.asarray(numpy.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    dx = to_host(ck.maxpool2d_backward(dy, argmax, x.shape, (3, 3), (2, 2), (0, 0)))
    assert dx[0, 0, 2, 2] == 10.0 and dx.sum() == 10.0


# ----------------------------------------------------------------------------
# LRN
# ----------------------------------------------------------------------------

LRN_CASES = [
    # (N, C, H, W, size, alpha, beta, k)
    (2, 7, 3, 4, 5, 5e-4, 0.75, 2.0),       # the paper's constants
    (2, 3, 2, 2, 5, 1e-4, 0.75, 1.0),       # fewer channels than the window
    (1, 1, 3, 3, 5, 0.5, 0.75, 1.0),        # one channel
    (2, 8, 3, 5, 4, 0.5, 0.6, 0.5),         # even size: asymmetric window
    (1, 6, 2, 3, 2, 0.9, 0.75, 1.0),
    (2, 5, 1, 1, 1, 0.3, 1.5, 2.0),         # size 1: the channel alone
    (3, 12, 4, 3, 7, 0.2, 0.75, 1.0),
    (1, 4, 2, 2, 9, 1.0, 0.5, 0.1),         # window wider than the whole channel axis
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LRN_CASES, ids=str)
def test_lrn_matches_array_code(case, dtype, layout, kxp):
    n, c, h, w, size, alpha, beta, k = case
    rng = numpy.random.default_rng(7)
    x = (2 * rng.standard_normal((n, c, h, w))).astype(dtype)    # large enough that alpha matters
    dy = rng.standard_normal((n, c, h, w)).astype(dtype)
    layer = nn.LocalResponseNorm(size, alpha, beta, k)
    with config.reference():
        y_ref = layer(x)
        dx_ref = layer.backward(dy)
    scale_ref = layer.scale(x)                # the reference's s and s**-beta
    pow_ref = scale_ref ** -beta

    y, scale, scale_pow = ck.lrn_forward(on_device(kxp, x, layout), size, alpha, beta, k)
    assert_close(scale, scale_ref, dtype, "scale")
    assert_close(scale_pow, pow_ref, dtype, "scale ** -beta")
    assert_close(y, y_ref, dtype, "output")
    dx = ck.lrn_backward(on_device(kxp, dy, layout), on_device(kxp, x, layout), scale, scale_pow,
                         size, alpha, beta)
    assert_close(dx, dx_ref, dtype, "input gradient")
    # the reference's scales (its own layouts) work as well
    dx_mixed = ck.lrn_backward(kxp.asarray(dy), kxp.asarray(x), kxp.asarray(scale_ref),
                               kxp.asarray(pow_ref), size, alpha, beta)
    assert_close(dx_mixed, dx_ref, dtype, "input gradient from the array code's cache")


# ----------------------------------------------------------------------------
# Element-wise: ReLU and dropout
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_mask_scale_match_array_code_exactly(dtype, kxp):
    rng = numpy.random.default_rng(9)
    x = rng.standard_normal((3, 4, 5, 2)).astype(dtype)
    x.flat[:5] = [0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan]
    y, mask = ck.relu_forward(kxp.asarray(x))
    ref_mask = x > 0
    with numpy.errstate(invalid="ignore"):
        ref = x * ref_mask                  # -inf * False = nan in the array code, kept exactly
    numpy.testing.assert_array_equal(to_host(mask), ref_mask)
    numpy.testing.assert_array_equal(to_host(y), ref)
    assert to_host(y).dtype == dtype and to_host(mask).dtype == bool

    keep = rng.random(x.shape) >= 0.3
    out = ck.mask_scale(kxp.asarray(x), kxp.asarray(keep), 1.0 / 0.7)
    numpy.testing.assert_array_equal(to_host(out), x * keep * dtype(1.0 / 0.7))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_relu_and_mask_scale_keep_the_memory_layout(layout, kxp):
    """(C, N, H, W) memory, as a convolution writes it, stays so through ReLU forward and backward
    (CuPy allocates the outputs of its own element-wise operations C-ordered)."""
    x = numpy.random.default_rng(10).standard_normal((3, 4, 5, 2)).astype(numpy.float32)
    y, mask = ck.relu_forward(on_device(kxp, x, layout))
    dx = ck.mask_scale(on_device(kxp, x, layout), mask, 1.0)
    for out in (y, mask, dx):
        assert out.shape == x.shape
        assert (out.swapaxes(0, 1) if layout == "cnhw" else out).flags.c_contiguous, layout
    numpy.testing.assert_array_equal(to_host(y), x * (x > 0))
    numpy.testing.assert_array_equal(to_host(dx), x * (x > 0))
    flat = numpy.random.default_rng(11).standard_normal((6, 8)).astype(numpy.float32)
    fc = ck.mask_scale(kxp.asarray(flat), kxp.asarray(flat > 0), 2.0)   # the dropout of an FC layer: (N, F)
    assert fc.flags.c_contiguous
    numpy.testing.assert_array_equal(to_host(fc), flat * (flat > 0) * numpy.float32(2.0))


# ----------------------------------------------------------------------------
# The emulator itself: launch shapes, and that it catches what it claims to
# ----------------------------------------------------------------------------

@needs_compiler
@pytest.mark.parametrize("launch", [{"block": 4, "max_blocks": 3}, {"block": 5, "max_blocks": 100, "reverse": True},
                                    {"block": 32, "max_blocks": 1}])
def test_results_do_not_depend_on_the_launch_shape(launch, monkeypatch):
    # Several threads and blocks (grid-stride loop included), in either order.
    monkeypatch.setattr(ck, "launcher", cuda_emulator.EmulatedLauncher(**launch))
    x = pool_input((2, 3, 9, 8), "tied", numpy.float64)
    numpy.testing.assert_array_equal(ck.im2col(x, (3, 2), (2, 1), (1, 1)),
                                     K.im2col(x, (3, 2), (2, 1), (1, 1)))
    col = K.im2col(x, (3, 3), (2, 2), (1, 1))
    assert_close(ck.col2im(col, x.shape, (3, 3), (2, 2), (1, 1)),
                 K.col2im(col, x.shape, (3, 3), (2, 2), (1, 1)), numpy.float64)
    y_ref, argmax_ref, dx_ref = array_code_pool(x, (3, 3), (2, 2), (1, 1), numpy.ones((2, 3, 5, 4)))
    out, argmax = ck.maxpool2d_forward(x, (3, 3), (2, 2), (1, 1))
    numpy.testing.assert_array_equal(out.transpose(1, 0, 2, 3), y_ref)
    numpy.testing.assert_array_equal(argmax, argmax_ref)
    assert_close(ck.maxpool2d_backward(numpy.ones((2, 3, 5, 4)), argmax, x.shape, (3, 3), (2, 2), (1, 1)),
                 dx_ref, numpy.float64)


@needs_compiler
def test_emulator_catches_wrong_arguments_and_stray_accesses(monkeypatch):
    emu = cuda_emulator.EmulatedLauncher()
    x = numpy.ones((1, 1, 4, 4))
    col = numpy.empty((4, 9))
    good = (x, col, numpy.int64(36), numpy.int64(9)) + tuple(numpy.int32(v) for v in
                                                             (1, 1, 4, 4, 2, 2, 1, 1, 0, 0, 3, 3)) \
        + tuple(numpy.int64(s) for s in (16, 16, 4, 1))
    emu.launch("npa_im2col", "float64", "uint8", 36, good)
    numpy.testing.assert_array_equal(col, 1.0)
    with pytest.raises(AssertionError, match="expected numpy.int32"):      # a Python int
        emu.launch("npa_im2col", "float64", "uint8", 36, good[:4] + (1,) + good[5:])
    with pytest.raises(AssertionError, match="arguments for"):
        emu.launch("npa_im2col", "float64", "uint8", 36, good[:-1])
    with pytest.raises(AssertionError, match="float64 array"):
        emu.launch("npa_im2col", "float64", "uint8", 36, (x.astype(numpy.float32),) + good[1:])
    # a wrong stride reads outside the view: poison (NaN) comes out
    emu.launch("npa_im2col", "float64", "uint8", 36, good[:-4] + tuple(numpy.int64(s) for s in (16, 16, 5, 1)))
    assert numpy.isnan(col).any()
    # too many threads write past the output
    with pytest.raises(AssertionError, match="written outside"):
        emu.launch("npa_im2col", "float64", "uint8", 40, (x, col, numpy.int64(40)) + good[3:])


needs_nvrtc = pytest.mark.skipif(cuda_emulator.find_nvrtc() is None,
                                 reason="no libnvrtc (pip wheel nvidia-cuda-nvrtc or a CUDA toolkit)")


@needs_nvrtc
@pytest.mark.parametrize("arch", ["compute_90", "compute_80"])
@pytest.mark.parametrize("ix", ["int32", "int64"])
@pytest.mark.parametrize("scalar, index", [("float32", "uint8"), ("float32", "int32"),
                                           ("float64", "uint8"), ("float64", "int32")])
def test_cuda_source_compiles_with_nvrtc(scalar, index, ix, arch):
    # The compiler CuPy uses, run on the CPU: the source is valid CUDA (no GPU needed to compile).
    ok, log, ptx = cuda_emulator.nvrtc_compile(ck.source_for(scalar, index, ix), (f"--gpu-architecture={arch}",))
    assert ok, log
    assert "warning" not in log.lower(), log
    for name in cuda_emulator.SIGNATURES:
        assert f".entry {name}(" in ptx, name      # extern "C": unmangled, found by get_function


@needs_nvrtc
@pytest.mark.parametrize("scalar", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(ck.ELEMENTWISE))
def test_elementwise_operations_compile_with_nvrtc(name, scalar):
    ok, log, _ = cuda_emulator.nvrtc_compile(cuda_emulator.elementwise_source(name, scalar))
    assert ok, log


def test_thread_index_type_leaves_room_for_the_grid_stride_step():
    assert ck.ix_for(1000) == "int32"
    assert ck.ix_for(2**31 - 1 - ck.BLOCK * ck.MAX_BLOCKS - 1) == "int32"
    assert ck.ix_for(2**31 - 1 - ck.BLOCK * ck.MAX_BLOCKS) == "int64"


@needs_compiler
def test_the_cupy_launcher_itself_on_a_fake_cupy(monkeypatch):
    # CupyLauncher as it will run on a GPU (its compile keys, grid, argument tuples), with a
    # stand-in cupy module whose kernels run on the emulator.
    import sys
    monkeypatch.setitem(sys.modules, "cupy", cuda_emulator.FakeCupy)
    monkeypatch.setattr(ck, "launcher", ck.CupyLauncher())
    monkeypatch.setattr(ck, "MAX_BLOCKS", 3)              # also exercise the grid-stride loop
    x = pool_input((2, 3, 9, 8), "tied", numpy.float32)
    numpy.testing.assert_array_equal(ck.im2col(x, (3, 2), (2, 1), (1, 1)), K.im2col(x, (3, 2), (2, 1), (1, 1)))
    col = K.im2col(x, (3, 3), (2, 2), (1, 1))
    assert_close(ck.col2im(col, x.shape, (3, 3), (2, 2), (1, 1)),
                 K.col2im(col, x.shape, (3, 3), (2, 2), (1, 1)), numpy.float32)
    dy = numpy.ones((2, 3, 5, 4), numpy.float32)
    y_ref, argmax_ref, dx_ref = array_code_pool(x, (3, 3), (2, 2), (1, 1), dy)
    out, argmax = ck.maxpool2d_forward(x, (3, 3), (2, 2), (1, 1))
    numpy.testing.assert_array_equal(out.transpose(1, 0, 2, 3), y_ref)
    numpy.testing.assert_array_equal(argmax, argmax_ref)
    assert_close(ck.maxpool2d_backward(dy, argmax, x.shape, (3, 3), (2, 2), (1, 1)), dx_ref, numpy.float32)
    y, scale, scale_pow = ck.lrn_forward(x, 5, 0.5, 0.75, 1.0)
    lrn = nn.LocalResponseNorm(5, 0.5, 0.75, 1.0)
    assert_close(y, lrn(x), numpy.float32, "lrn")
    g = numpy.random.default_rng(3).standard_normal(x.shape).astype(numpy.float32)
    assert_close(ck.lrn_backward(g, x, scale, scale_pow, 5, 0.5, 0.75), lrn.backward(g), numpy.float32, "lrn bwd")
    relu_y, mask = ck.relu_forward(x)
    numpy.testing.assert_array_equal(relu_y, x * (x > 0))
    numpy.testing.assert_array_equal(ck.mask_scale(x, mask, 2.0), x * mask * numpy.float32(2.0))
    assert set(ck.launcher._modules) == {("float32", "uint8", "int32")}     # one compilation served all


def test_every_kernel_in_the_source_is_used_and_parsed():
    assert set(cuda_emulator.SIGNATURES) == {"npa_im2col", "npa_col2im", "npa_maxpool_fwd",
                                             "npa_maxpool_bwd", "npa_lrn_fwd", "npa_lrn_bwd"}


# ----------------------------------------------------------------------------
# Layers and a whole model through the kernels (emulated: dispatch forced on NumPy arrays)
# ----------------------------------------------------------------------------

def run_model(model, x, g, seed=0):
    npalexnet.manual_seed(seed)
    model.zero_grad()
    y = model(x)
    dx = model.backward(g)
    return y, dx, {name: p.grad.copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keyed", ["sample_keys", "library", "seed"])
def test_dropout_draws_the_layers_own_mask_in_the_kernel_bit_for_bit(kxp, keyed, dtype, monkeypatch):
    """The kernel hashes the row keys the layer's draw uses (inside sample_keys, the library stream, a
    fixed seed): the same mask to the bit, the same output and gradient, and the stream advances as the
    layer's draw advances it (two calls)."""
    import contextlib

    from npalexnet import random_streams
    if kxp is numpy:
        monkeypatch.setattr(cuda_layers, "_on_gpu_float", lambda a: a.dtype.char in "fd")   # as if on a GPU
    rng = numpy.random.default_rng(2)
    x = kxp.asarray(rng.standard_normal((6, 3, 5, 7)).astype(dtype))
    g = kxp.asarray(rng.standard_normal((6, 3, 5, 7)).astype(dtype))
    layer = nn.Dropout(0.3, seed=11 if keyed == "seed" else None)

    def two_calls(kernel):
        npalexnet.manual_seed(4)
        keys = random_streams.sample_keys(numpy.arange(10, 16), seed=7, epoch=2) if keyed == "sample_keys" \
            else contextlib.nullcontext()
        out = []
        with config.using(cuda_kernels=kernel), keys:
            for _ in range(2):
                out += [layer(x), layer.mask, layer.backward(g)]
        return [to_host(a) for a in out]

    ours, ref = two_calls(True), two_calls(False)
    for what, a, b in zip(["y", "mask", "dx"] * 2, ours, ref):
        numpy.testing.assert_array_equal(a, b, err_msg=what)
    assert 0.6 < ours[1].mean() < 0.8
    assert numpy.array_equal(ours[1], ours[4]) == (keyed == "seed")
    if kxp is numpy:
        assert ck.launcher.calls.count("npa_dropout_fwd") == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hyper", [dict(lr=0.1), dict(lr=0.1, weight_decay=1e-2),
                                   dict(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
                                   dict(lr=0.01, momentum=0.9, dampening=0.1),
                                   dict(lr=0.02, momentum=0.5, weight_decay=1e-2)])
def test_the_sgd_kernel_makes_the_reference_update(kxp, hyper, dtype, monkeypatch):
    """Four steps of torch.optim.SGD's update in one kernel per parameter against the optimizer's own
    array code (momentum buffer created on the first step, then read and written in place)."""
    if kxp is numpy:
        monkeypatch.setattr(cuda_layers, "_on_gpu_float", lambda a: a.dtype.char in "fd")   # as if on a GPU
    rng = numpy.random.default_rng(5)
    start = rng.standard_normal((37, 11)).astype(dtype)
    grads = [rng.standard_normal(start.shape).astype(dtype) for _ in range(4)]
    results = {}
    for kernel in (True, False):
        p = nn.Parameter(kxp.asarray(start.copy()))
        opt = optim.SGD([p], **hyper)
        with config.using(cuda_kernels=kernel, numba=False):
            for g in grads:
                p.grad = kxp.asarray(g)
                assert isinstance(kernels.choose(opt, p), cuda_layers.CudaSGD) == kernel
                opt.step()
        results[kernel] = to_host(p.data)
        if kernel and kxp is numpy:
            assert ck.launcher.calls[-1] == ("npa_sgd_momentum" if hyper.get("momentum") else "npa_sgd")
    # the same operations in the same order, up to the GPU's fused multiply-adds: a few roundings
    scale = numpy.abs(start) + sum(numpy.abs(g) for g in grads) * hyper["lr"] * 4
    assert numpy.all(numpy.abs(results[True] - results[False]) <= 8 * numpy.finfo(dtype).eps * scale)
    assert not numpy.array_equal(results[True], start)


@needs_compiler
@pytest.mark.parametrize("variant, size", [("paper", 227), ("cifar", 32)])
def test_whole_model_through_the_kernels_matches_array_code(variant, size, monkeypatch):
    from npalexnet.models import alexnet
    npalexnet.manual_seed(0)
    kwargs = {"lrn": True} if variant == "cifar" else {}
    model = alexnet(variant, num_classes=10, width=0.125, **kwargs).astype(numpy.float64)
    model.train()
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((2, 3, size, size))
    g = rng.standard_normal((2, 10))
    y_ref, dx_ref, grads_ref = run_model(model, x, g)

    launcher = cuda_emulator.EmulatedLauncher()
    monkeypatch.setattr(ck, "launcher", launcher)
    monkeypatch.setattr(cuda_layers, "_on_gpu_float", lambda a: a.dtype.char in "fd")
    with config.using(cuda_kernels=True):
        y, dx, grads = run_model(model, x, g)
    used = set(launcher.calls)
    assert {"npa_im2col", "npa_col2im", "npa_maxpool_fwd", "npa_maxpool_bwd", "npa_lrn_fwd",
            "npa_lrn_bwd", "npa_relu_fwd", "npa_mask_scale"} <= used, used
    assert_close(y, y_ref, numpy.float64, "logits")
    assert_close(dx, dx_ref, numpy.float64, "input gradient")
    for name in grads_ref:
        assert_close(grads[name], grads_ref[name], numpy.float64, name)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant, size", [("paper", 227), ("cifar", 32)])
def test_whole_model_on_the_gpu_kernels_on_and_off_agree(variant, size, dtype):
    import cupy

    from npalexnet.models import alexnet
    npalexnet.manual_seed(0)
    kwargs = {"lrn": True} if variant == "cifar" else {}
    model = alexnet(variant, num_classes=10, width=0.25, **kwargs).astype(dtype).to("cuda")
    model.train()
    rng = numpy.random.default_rng(0)
    x = cupy.asarray(rng.standard_normal((4, 3, size, size)).astype(dtype))
    g = cupy.asarray(rng.standard_normal((4, 10)).astype(dtype))
    with config.using(cuda_kernels=False):
        y_ref, dx_ref, grads_ref = run_model(model, x, g)
    with config.using(cuda_kernels=True):
        y, dx, grads = run_model(model, x, g)
    tol = {numpy.float32: 1e-4, numpy.float64: 1e-11}[dtype]    # a whole net: sums of sums
    for what, ours, ref in [("logits", y, y_ref), ("input gradient", dx, dx_ref)] + \
            [(name, grads[name], grads_ref[name]) for name in grads_ref]:
        ours, ref = to_host(ours), to_host(ref)
        err = numpy.max(numpy.abs(ours - ref)) / max(numpy.max(numpy.abs(ref)), 1e-30)
        assert err <= tol, f"{what}: relative error {err:.3g}"


# ----------------------------------------------------------------------------
# The switch (runs everywhere)
# ----------------------------------------------------------------------------

def test_numpy_arrays_never_run_the_cuda_kernels(monkeypatch):
    """Switched on, NumPy arrays still take the NumPy paths (no CUDA implementation applies)."""
    class Refuse:
        def launch(self, *args):
            raise AssertionError("a CUDA kernel was launched for a NumPy array")

        elementwise = launch

    monkeypatch.setattr(ck, "launcher", Refuse())
    x = numpy.random.default_rng(0).standard_normal((2, 4, 9, 9))
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.LocalResponseNorm(3),
                          nn.MaxPool2d(3, 2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(96, 3)).astype(numpy.float64)
    with config.using(cuda_kernels=True):
        for layer in model:
            chosen = kernels.choose(layer, x)
            assert chosen is None or "cpu" in chosen.devices
        model.backward(model(x))


def test_the_cuda_implementations_take_only_float_gpu_arrays(monkeypatch):
    layer = nn.ReLU()
    monkeypatch.setattr(cuda_layers, "_on_gpu_float", lambda a: a.dtype.char in "fd")   # as if on a GPU
    with config.using(cuda_kernels=True):
        assert isinstance(kernels.choose(layer, numpy.zeros(3, numpy.float32)), cuda_layers.CudaReLU)
        assert not isinstance(kernels.choose(layer, numpy.zeros(3, numpy.float16)), cuda_layers.CudaReLU)
    with config.using(cuda_kernels=False):
        assert not isinstance(kernels.choose(layer, numpy.zeros(3, numpy.float32)), cuda_layers.CudaReLU)


def test_importing_the_package_does_not_import_cupy():
    import subprocess
    import sys
    code = ("import sys, npalexnet, npalexnet.kernels.cuda_kernels, npalexnet.models; "
            "assert 'cupy' not in sys.modules, 'cupy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
