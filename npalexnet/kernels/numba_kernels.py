"""numba-compiled CPU kernels for the hottest loops (NumPy arrays only).

The array code's im2col, col2im and max-pooling make one strided copy per
kernel offset; each copy walks the whole tensor, so a 3x3 kernel reads its
input nine times and allocates temporaries. The kernels here do the same
arithmetic in one pass, writing straight into the output: same shapes,
dtypes, memory layouts and results as the array code (tests compare them
element for element).

Threads: the kernels are serial on purpose. They are memory-bound, so a
second thread buys little, and a numba thread pool beside OpenBLAS's costs a
lot: numba's OpenMP workers spinning after a kernel slow the next GEMMs
(benchmarks/RESULTS.md has the measurement).

numba is a dependency, but the package works without it: ``AVAILABLE`` is
False when it does not import, and the ``numba`` setting
(:mod:`npalexnet.config`, ``NPALEXNET_NUMBA=0``) switches these kernels off;
the implementations that use them (:mod:`.cpu_layers`, :mod:`.winograd`) then
do not apply and the layers' own code runs. Compiled code is cached on disk
(``cache=True``) so later processes start fast.
"""

from __future__ import annotations

import numpy

from . import memory

try:
    import numba

    AVAILABLE = True
except ImportError:   # pragma: no cover - exercised by monkeypatching AVAILABLE
    numba = None
    AVAILABLE = False


def _jit(fn, fastmath=False):
    if not AVAILABLE:
        return fn
    # error_model="numpy": a division by zero gives inf/nan as in NumPy; the default Python model
    # tests every divisor and raises, which keeps the loops from vectorising.
    return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=fastmath)(fn)


def _jit_arcp(fn):
    # fastmath's "arcp" alone: a division may become a multiplication by an (approximate, Newton-
    # refined) reciprocal. LRN's s**-0.75 = 1/(sqrt(s) sqrt(sqrt(s))) then runs faster at the same
    # accuracy (benchmarks/RESULTS.md; the conformance suite holds it to the rounding bound).
    # NaN and infinity keep their meaning: the flags that assume none ("nnan", "ninf") stay off.
    return _jit(fn, fastmath={"arcp"})


# ---------------------------------------------------------------------------- im2col / col2im
# The kernels work one (channel, image) plane at a time through a small padded
# copy of the plane (a few KB, in L1/L2): the inner loops then have no bounds
# tests (numba vectorises them) and every output row is written once, in order.

# Index arithmetic is unsigned (numba.uint64): numba wraps negative signed indices around
# (Python semantics) with a test on every access, which halves the speed of these copy loops
# (benchmarks/RESULTS.md). Offsets into flat arrays are explicit.
_u = numba.uint64 if AVAILABLE else int


@_jit
def _im2col(x_cn, col, kh, kw, sh, sw, ph, pw):
    # x_cn: (C, N, H, W) view of the input; col: C-contiguous (C, KH, KW, N, OH, OW)
    c_, n_, h, w = x_cn.shape
    oh, ow = col.shape[4], col.shape[5]
    w2 = _u(w + 2 * pw)
    plane = numpy.zeros((h + 2 * ph) * (w + 2 * pw), dtype=col.dtype)   # the border stays zero
    flat = col.reshape(-1)
    big_l, nn_ = _u(oh * ow), _u(n_)
    for c in range(_u(c_)):
        for n in range(nn_):
            for i in range(_u(h)):
                for j in range(_u(w)):
                    plane[(_u(ph) + i) * w2 + _u(pw) + j] = x_cn[c, n, i, j]
            for ky in range(_u(kh)):
                for kx in range(_u(kw)):
                    base = (((c * _u(kh) + ky) * _u(kw) + kx) * nn_ + n) * big_l
                    for oy in range(_u(oh)):
                        src = (oy * _u(sh) + ky) * w2 + kx
                        dst = base + oy * _u(ow)
                        if sw == 1:   # a contiguous run: a vector copy
                            for ox in range(_u(ow)):
                                flat[dst + ox] = plane[src + ox]
                        else:
                            for ox in range(_u(ow)):
                                flat[dst + ox] = plane[src + ox * _u(sw)]


@_jit
def _col2im(col, dx_cn, kh, kw, sh, sw, ph, pw):
    # col: C-contiguous (C, KH, KW, N, OH, OW); dx_cn: (C, N, H, W), written once per element.
    c_, n_, h, w = dx_cn.shape
    oh, ow = col.shape[4], col.shape[5]
    w2 = _u(w + 2 * pw)
    plane = numpy.empty((h + 2 * ph) * (w + 2 * pw), dtype=col.dtype)
    flat = col.reshape(-1)
    big_l, nn_ = _u(oh * ow), _u(n_)
    for c in range(_u(c_)):
        for n in range(nn_):
            plane[:] = 0
            for ky in range(_u(kh)):
                for kx in range(_u(kw)):
                    base = (((c * _u(kh) + ky) * _u(kw) + kx) * nn_ + n) * big_l
                    for oy in range(_u(oh)):
                        dst = (oy * _u(sh) + ky) * w2 + kx
                        src = base + oy * _u(ow)
                        if sw == 1:
                            for ox in range(_u(ow)):
                                plane[dst + ox] += flat[src + ox]
                        else:
                            for ox in range(_u(ow)):
                                plane[dst + ox * _u(sw)] += flat[src + ox]
            for i in range(_u(h)):
                for j in range(_u(w)):
                    dx_cn[c, n, i, j] = plane[(_u(ph) + i) * w2 + _u(pw) + j]


def im2col(x, kernel, stride, padding, out_hw, out=None):
    """numba im2col: same contract as :func:`npalexnet.nn.im2col.im2col`."""
    n, c, _, _ = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    shape = (c, kh, kw, n, oh, ow)
    col = numpy.empty(shape, dtype=x.dtype) if out is None else out.reshape(shape)
    _im2col(x.transpose(1, 0, 2, 3), col, kh, kw, sh, sw, ph, pw)
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kernel, stride, padding, out_hw, out=None):
    """numba col2im: same contract as :func:`npalexnet.nn.im2col.col2im`
    (``out``: an (N, C, H, W) view of C-contiguous (C, N, H, W) memory to write into)."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    dx_cn = numpy.empty((c, n, h, w), dtype=col.dtype) if out is None else out.transpose(1, 0, 2, 3)
    _col2im(numpy.ascontiguousarray(col).reshape(c, kh, kw, n, oh, ow), dx_cn, kh, kw, sh, sw, ph, pw)
    return dx_cn.transpose(1, 0, 2, 3)


# ---------------------------------------------------------------------------- channel planes
# The max-pool and Winograd kernels work on one channel at a time, gathered into a scratch
# plane of (rows, columns, N) order with the batch innermost, so that their loops run over
# the N images whatever the size of the feature map. These two move a channel in and out.

@_jit
def _gather_plane(src_cn, c, plane, ph, pw, wp):
    # plane[ph + i, pw + j, n] = src_cn[c, n, i, j]; plane: flat (rows, wp, N). The rest is untouched.
    _, n_, h, w = src_cn.shape
    nn_ = _u(n_)
    for n in range(nn_):
        for i in range(_u(h)):
            base = ((_u(ph) + i) * _u(wp) + _u(pw)) * nn_ + n
            for j in range(_u(w)):
                plane[base + j * nn_] = src_cn[c, n, i, j]


@_jit
def _scatter_plane(plane, dst_cn, c, ph, pw, wp, add):
    # The inverse: dst_cn[c, n, i, j] = plane[ph + i, pw + j, n] + add (the bias, or 0).
    _, n_, h, w = dst_cn.shape
    nn_ = _u(n_)
    for n in range(nn_):
        for i in range(_u(h)):
            base = ((_u(ph) + i) * _u(wp) + _u(pw)) * nn_ + n
            for j in range(_u(w)):
                dst_cn[c, n, i, j] = plane[base + j * nn_] + add


# ---------------------------------------------------------------------------- max-pooling
# Forward as the Winograd kernels: each channel is gathered into a (rows, columns, N) plane, so
# that every loop runs over the N images of the batch (contiguous and vectorised, with selects
# instead of branches), whatever the size of the feature map. (A separable version working on
# each image's plane in place, a row pass then a column pass over whole output rows, was several
# times slower: its loops are only OW long.) Backward is a scatter a (channel, image) plane at a
# time: the plane is zeroed and filled in cache, so dx goes to memory once.

@_jit
def _maxpool_forward(x_cn, out, argmax, kh, kw, sh, sw, ph, pw):
    # The window's offsets in row-major order, padding read as -inf; a later value wins only if
    # strictly greater (ties keep the first maximum) or NaN (torch's rule: NaN propagates), as in
    # the array code. Flat unsigned offsets, the batch innermost: the select loop vectorises.
    c_, n_, h, w = x_cn.shape
    oh, ow = out.shape[2], out.shape[3]
    w2, nn_ = _u(w + 2 * pw), _u(n_)
    plane = numpy.full((h + 2 * ph) * (w + 2 * pw) * n_, -numpy.inf, dtype=out.dtype)
    best = numpy.empty(oh * ow * n_, dtype=out.dtype)
    arg = numpy.empty(oh * ow * n_, dtype=argmax.dtype)
    for c in range(_u(c_)):
        _gather_plane(x_cn, c, plane, ph, pw, w2)
        for oy in range(_u(oh)):
            for ox in range(_u(ow)):
                o = (oy * _u(ow) + ox) * nn_
                first = (oy * _u(sh) * w2 + ox * _u(sw)) * nn_
                for n in range(nn_):
                    best[o + n] = plane[first + n]
                    arg[o + n] = 0
                for ky in range(_u(kh)):
                    for kx in range(_u(kw)):
                        if ky == 0 and kx == 0:
                            continue
                        src = ((oy * _u(sh) + ky) * w2 + ox * _u(sw) + kx) * nn_
                        k = ky * _u(kw) + kx
                        for n in range(nn_):
                            v = plane[src + n]
                            if v > best[o + n] or v != v:
                                best[o + n] = v
                                arg[o + n] = k
        for n in range(nn_):
            for oy in range(_u(oh)):
                for ox in range(_u(ow)):
                    o = (oy * _u(ow) + ox) * nn_ + n
                    out[c, n, oy, ox] = best[o]
                    argmax[c, n, oy, ox] = arg[o]


@_jit
def _maxpool_backward(dy_cn, argmax, dx_cn, kh, kw, sh, sw, ph, pw):
    # A scatter in the natural layout, a plane at a time: zeroed, then each window's gradient
    # added to its winner (in cache), so dx goes to memory once.
    c_, n_, h, w = dx_cn.shape
    oh, ow = dy_cn.shape[2], dy_cn.shape[3]
    for c in range(c_):
        for n in range(n_):
            for i in range(h):
                for j in range(w):
                    dx_cn[c, n, i, j] = 0
            for oy in range(oh):
                for ox in range(ow):
                    k = argmax[c, n, oy, ox]
                    iy = oy * sh + k // kw - ph
                    ix = ox * sw + k % kw - pw
                    if 0 <= iy < h and 0 <= ix < w:   # a padded winner (all -inf) passes nothing on
                        dx_cn[c, n, iy, ix] += dy_cn[c, n, oy, ox]


def maxpool_forward(x, kernel, stride, padding, out_hw, index_dtype, out=None, argmax=None):
    """Values (C, N, OH, OW) and winning window offsets, as the array code of MaxPool2d
    (``out``/``argmax``: C-contiguous (C, N, OH, OW) arrays to write into)."""
    n, c, _, _ = x.shape
    oh, ow = out_hw
    out = numpy.empty((c, n, oh, ow), dtype=x.dtype) if out is None else out
    argmax = numpy.empty((c, n, oh, ow), dtype=index_dtype) if argmax is None else argmax
    _maxpool_forward(x.transpose(1, 0, 2, 3), out, argmax, *kernel, *stride, *padding)
    return out, argmax


def maxpool_backward(grad_out, argmax, x_shape, kernel, stride, padding, out=None):
    """dx (N, C, H, W) (a view of (C, N, H, W) memory) routed to each window's winner
    (``out``: such a view to write into; every element is written)."""
    n, c, h, w = x_shape
    dx_cn = numpy.empty((c, n, h, w), dtype=grad_out.dtype) if out is None else out.transpose(1, 0, 2, 3)
    _maxpool_backward(grad_out.transpose(1, 0, 2, 3), argmax, dx_cn, *kernel, *stride, *padding)
    return dx_cn.transpose(1, 0, 2, 3)


# ---------------------------------------------------------------------------- Winograd transforms
# The four data transforms of npalexnet.kernels.winograd, for any tile F(m x m, r x r), each
# fused with the rearrangement around it. A 2-D transform is two 1-D ones (BB = BT (x) BT):
# one along the rows of the image, one along the columns. They work a channel at a time:
#
#   * the channel's plane is gathered into a (rows, columns, N) scratch buffer, and the 1-D
#     pass along the rows of tiles fills another (a few hundred KB: both stay in L2);
#   * the big arrays (V, M and their gradients, tens to hundreds of MB) are then touched as
#     one contiguous run of TH*TW*N numbers per position and channel, read or written once.
#     Their runs for the same channel lie P rows apart: visiting many of them at once (a tile
#     row at a time, as an earlier version did) outran the hardware prefetcher and made the
#     transforms memory-latency bound (benchmarks/RESULTS.md).
#
# The matrices come in as arrays; zero entries are skipped and +-1 entries multiply exactly,
# so F(2x2, 3x3) costs no more than hand-written adds. The loops over tiles call no functions
# (a helper per tile and row built array structs that cost more than the arithmetic; the plane
# gather and scatter are one call per channel) and touch
# at most three arrays (see the LRN kernels). Index arithmetic is unsigned (see im2col above).

@_jit
def _winograd_input(x_cn, v, bt, m, ph, pw, th, tw):
    # x_cn: (C, N, H, W) view; v: C-contiguous (A*A, C, TH*TW*N), column (ty*TW + tx)*N + n;
    # bt: (A, A). V[(i, j)] of a tile = sum_(k, l) BT[i, k] BT[j, l] x_pad[m*ty + k, m*tx + l].
    c_, n_ = x_cn.shape[0], x_cn.shape[1]
    a = _u(bt.shape[0])
    mm, nn_, th_, tw_ = _u(m), _u(n_), _u(th), _u(tw)
    wp = mm * tw_ + a - mm                       # padded columns the tiles read
    rw = wp * nn_                                # one plane row: (columns, N)
    plane = numpy.zeros((mm * th_ + a - mm) * rw, dtype=v.dtype)   # the border stays zero
    t = numpy.empty(a * th_ * rw, dtype=v.dtype)   # t[i, ty] = sum_k BT[i, k] plane[m*ty + k]
    vf = v.reshape(-1)
    cc, nt, twn = _u(c_), _u(v.shape[2]), tw_ * nn_
    for c in range(cc):
        _gather_plane(x_cn, c, plane, ph, pw, wp)
        t[:] = 0
        for ty in range(th_):                    # along the rows: whole plane rows at once
            for i in range(a):
                d = (i * th_ + ty) * rw
                for k in range(a):
                    coef = bt[i, k]
                    if coef != 0:
                        s = (mm * ty + k) * rw
                        for q in range(rw):
                            t[d + q] += coef * plane[s + q]
        for i in range(a):                       # along the columns: V[(i, j), c] written once
            for j in range(a):
                d0 = ((i * a + j) * cc + c) * nt
                vf[d0:d0 + nt] = 0
                for ty in range(th_):
                    for k in range(a):
                        coef = bt[j, k]
                        if coef != 0:
                            s = (i * th_ + ty) * rw + k * nn_
                            d = d0 + ty * twn
                            for tx in range(tw_):
                                dd, ss = d + tx * nn_, s + tx * mm * nn_
                                for n in range(nn_):
                                    vf[dd + n] += coef * t[ss + n]


@_jit
def _winograd_input_backward(dv, dx_cn, bt, m, ph, pw, th, tw):
    # The adjoint of _winograd_input. dv: C-contiguous (A*A, C, TH*TW*N); dx_cn: (C, N, H, W),
    # written once per element. Overlapping tiles add into the plane; the padding is dropped.
    c_, n_ = dx_cn.shape[0], dx_cn.shape[1]
    a = _u(bt.shape[0])
    mm, nn_, th_, tw_ = _u(m), _u(n_), _u(th), _u(tw)
    wp = mm * tw_ + a - mm
    rw = wp * nn_
    plane = numpy.empty((mm * th_ + a - mm) * rw, dtype=dv.dtype)
    t = numpy.empty(a * th_ * rw, dtype=dv.dtype)
    vf = dv.reshape(-1)
    cc, nt, twn = _u(c_), _u(dv.shape[2]), tw_ * nn_
    for c in range(cc):
        t[:] = 0
        for i in range(a):                       # columns: dt[i, ty, m*tx + k] += BT[j, k] dV[(i, j)]
            for j in range(a):
                s0 = ((i * a + j) * cc + c) * nt
                for ty in range(th_):
                    for k in range(a):
                        coef = bt[j, k]
                        if coef != 0:
                            d = (i * th_ + ty) * rw + k * nn_
                            s = s0 + ty * twn
                            for tx in range(tw_):
                                dd, ss = d + tx * mm * nn_, s + tx * nn_
                                for n in range(nn_):
                                    t[dd + n] += coef * vf[ss + n]
        plane[:] = 0
        for ty in range(th_):                    # rows: dplane[m*ty + k] += BT[i, k] dt[i, ty]
            for i in range(a):
                s = (i * th_ + ty) * rw
                for k in range(a):
                    coef = bt[i, k]
                    if coef != 0:
                        d = (mm * ty + k) * rw
                        for q in range(rw):
                            plane[d + q] += coef * t[s + q]
        _scatter_plane(plane, dx_cn, c, ph, pw, wp, dv.dtype.type(0))


@_jit
def _winograd_output(mt, bias, y_cn, at, th, tw, use_bias):
    # mt: C-contiguous (A*A, OC, TH*TW*N); y_cn: (OC, N, OH, OW); at: (m, A).
    # y[m*ty + i, m*tx + j] = sum_(k, l) AT[i, k] AT[j, l] M[(k, l)] (+ bias), cut to OH x OW.
    oc_, n_ = y_cn.shape[0], y_cn.shape[1]
    mm, a = _u(at.shape[0]), _u(at.shape[1])
    nn_, th_, tw_ = _u(n_), _u(th), _u(tw)
    owp = mm * tw_                               # columns of the whole tiles
    plane = numpy.empty(mm * th_ * owp * nn_, dtype=mt.dtype)
    twn = tw_ * nn_
    mf = mt.reshape(-1)
    cc, nt = _u(oc_), _u(mt.shape[2])
    p = numpy.empty(mm * a * nt, dtype=mt.dtype)   # p[i, l] = sum_k AT[i, k] M[(k, l), c]
    for c in range(cc):
        p[:] = 0
        for l in range(a):                       # rows: each run of M read once, for every i
            for k in range(a):
                s = ((k * a + l) * cc + c) * nt
                for i in range(mm):
                    coef = at[i, k]
                    if coef != 0:
                        d = (i * a + l) * nt
                        for q in range(nt):
                            p[d + q] += coef * mf[s + q]
        plane[:] = 0
        for ty in range(th_):                    # columns: y[m*ty + i, m*tx + j] = sum_l AT[j, l] p[i, l]
            for i in range(mm):
                for j in range(mm):
                    d = ((mm * ty + i) * owp + j) * nn_
                    for l in range(a):
                        coef = at[j, l]
                        if coef != 0:
                            s = (i * a + l) * nt + ty * twn
                            for tx in range(tw_):
                                dd, ss = d + tx * mm * nn_, s + tx * nn_
                                for n in range(nn_):
                                    plane[dd + n] += coef * p[ss + n]
        _scatter_plane(plane, y_cn, c, 0, 0, owp, bias[c] if use_bias else mt.dtype.type(0))


@_jit
def _winograd_output_backward(dy_cn, dm, at, th, tw):
    # The adjoint of _winograd_output. dy_cn: (OC, N, OH, OW) view; dm: C-contiguous
    # (A*A, OC, TH*TW*N), every entry written (the tiles' part beyond OH x OW has zero gradient).
    oc_, n_ = dy_cn.shape[0], dy_cn.shape[1]
    mm, a = _u(at.shape[0]), _u(at.shape[1])
    nn_, th_, tw_ = _u(n_), _u(th), _u(tw)
    owp = mm * tw_
    plane = numpy.zeros(mm * th_ * owp * nn_, dtype=dm.dtype)   # an odd edge stays zero
    twn = tw_ * nn_
    mf = dm.reshape(-1)
    cc, nt = _u(oc_), _u(dm.shape[2])
    p = numpy.empty(mm * a * nt, dtype=dm.dtype)
    for c in range(cc):
        _gather_plane(dy_cn, c, plane, 0, 0, owp)
        p[:] = 0
        for ty in range(th_):                    # columns: dp[i, l] = sum_j AT[j, l] dy[m*ty + i, m*tx + j]
            for i in range(mm):
                for l in range(a):
                    d = (i * a + l) * nt + ty * twn
                    for j in range(mm):
                        coef = at[j, l]
                        if coef != 0:
                            s = ((mm * ty + i) * owp + j) * nn_
                            for tx in range(tw_):
                                dd, ss = d + tx * nn_, s + tx * mm * nn_
                                for n in range(nn_):
                                    p[dd + n] += coef * plane[ss + n]
        for k in range(a):                       # rows: dM[(k, l), c] = sum_i AT[i, k] dp[i, l], written once
            for l in range(a):
                d = ((k * a + l) * cc + c) * nt
                mf[d:d + nt] = 0
                for i in range(mm):
                    coef = at[i, k]
                    if coef != 0:
                        s = (i * a + l) * nt
                        for q in range(nt):
                            mf[d + q] += coef * p[s + q]


_SPEC_ARRAYS: dict = {}


def _spec_arrays(spec, dtype):
    """(BT, AT) of a :class:`~npalexnet.kernels.winograd.Spec` as C-contiguous arrays of ``dtype``."""
    key = (spec, numpy.dtype(dtype).str)   # specs compare by identity: other points, other matrices
    if key not in _SPEC_ARRAYS:
        _SPEC_ARRAYS[key] = (numpy.ascontiguousarray(spec.BT, dtype=dtype),
                             numpy.ascontiguousarray(spec.AT, dtype=dtype))
    return _SPEC_ARRAYS[key]


def winograd_input_transform(x, padding, th, tw, out, *, spec):
    """V (P, C, TH*TW*N) of :mod:`npalexnet.kernels.winograd` into ``out``, for tile ``spec``."""
    bt, _ = _spec_arrays(spec, out.dtype)
    _winograd_input(x.transpose(1, 0, 2, 3), out, bt, spec.m, padding[0], padding[1], th, tw)
    return out


def winograd_input_transform_backward(dv, x_shape, padding, th, tw, out=None, *, spec):
    """dx (N, C, H, W) (a view of (C, N, H, W) memory, ``out`` when given) from dV (P, C, TH*TW*N)."""
    n, c, h, w = x_shape
    dx_cn = numpy.empty((c, n, h, w), dtype=dv.dtype) if out is None else out.transpose(1, 0, 2, 3)
    bt, _ = _spec_arrays(spec, dv.dtype)
    _winograd_input_backward(dv, dx_cn, bt, spec.m, padding[0], padding[1], th, tw)
    return dx_cn.transpose(1, 0, 2, 3)


def winograd_output_transform(m, bias, out_shape, th, tw, out=None, *, spec):
    """y (OC, N, OH, OW) (``out`` when given) from M (P, OC, TH*TW*N), plus ``bias`` (OC,) or None."""
    y_cn = numpy.empty(out_shape, dtype=m.dtype) if out is None else out
    use_bias = bias is not None
    _, at = _spec_arrays(spec, m.dtype)
    _winograd_output(m, bias if use_bias else m[0, :, 0], y_cn, at, th, tw, use_bias)
    return y_cn


def winograd_output_transform_backward(grad_out, th, tw, out, *, spec):
    """dM (P, OC, TH*TW*N) into ``out`` from dy (N, OC, OH, OW)."""
    _, at = _spec_arrays(spec, out.dtype)
    _winograd_output_backward(grad_out.transpose(1, 0, 2, 3), out, at, th, tw)
    return out


# ---------------------------------------------------------------------------- local response normalisation
# On (C, M) arrays: channel c's values for all images and positions are one contiguous row of
# M numbers (the (C, N, H, W) memory a convolution and ReLU leave behind). The work goes in
# blocks of columns: a block of every channel stays in L2 while the channel window is summed
# over it. LRN is memory-bound, so nothing but y is stored: backward recomputes the scales
# s = k + alpha/n * (window sum of x^2) and s^-beta from x, block by block in cache, instead
# of reading two stored arrays of x's size back (a faster forward, an as fast backward and less
# memory kept between them: benchmarks/RESULTS.md). Every loop runs along a block row and touches
# at most three arrays: with more, LLVM's run-time alias checks exceed their budget and the loop
# stays scalar.
# s**-beta for the paper's beta = 0.75 is 1/(sqrt(s) * sqrt(sqrt(s))): vectorised square
# roots instead of a scalar pow (several times faster; a few ulps).

_LRN_BLOCK_FLOATS = 1 << 16   # one (C, block) buffer: 256 KB, three of them in L2


def _lrn_block(channels: int) -> int:
    """Columns per block: a (C, block) float buffer of _LRN_BLOCK_FLOATS, at least 64 columns."""
    return max(64, (_LRN_BLOCK_FLOATS // max(channels, 1)) // 16 * 16)


@_jit_arcp
def _lrn_scales(x, b0, bl, bs, sq, s, sp, before, after, kk, an, beta):
    # s, sp (C*bs buffers) = the scale and scale**-beta of the block x[:, b0:b0 + bl]; sq: scratch.
    c_ = x.shape[0]
    cc = _u(c_)
    one = x.dtype.type(1)
    for c in range(cc):
        for i in range(bl):
            sq[c * bs + i] = x[c, b0 + i] * x[c, b0 + i]
    for c in range(cc):
        lo = _u(max(0, int(c) - before))
        hi = _u(min(c_, int(c) + after + 1))
        o = c * bs
        for i in range(bl):
            s[o + i] = sq[lo * bs + i]
        for d in range(lo + _u(1), hi):   # _u: uint64 + int64 would be float64
            for i in range(bl):
                s[o + i] += sq[d * bs + i]
        for i in range(bl):
            s[o + i] = kk + an * s[o + i]
        if beta == 0.75:
            for i in range(bl):
                r = numpy.sqrt(s[o + i])
                sp[o + i] = one / (r * numpy.sqrt(r))
        else:
            bb = x.dtype.type(beta)
            for i in range(bl):
                sp[o + i] = s[o + i] ** -bb


@_jit
def _lrn_forward(x, y, before, after, k, a_n, beta, block):
    c_, m = x.shape
    bs, cc, mu = _u(block), _u(c_), _u(m)
    sq = numpy.empty(cc * bs, dtype=x.dtype)
    s = numpy.empty(cc * bs, dtype=x.dtype)
    sp = numpy.empty(cc * bs, dtype=x.dtype)
    kk, an = x.dtype.type(k), x.dtype.type(a_n)
    for b0 in range(_u(0), mu, bs):
        bl = min(bs, mu - b0)
        _lrn_scales(x, b0, bl, bs, sq, s, sp, before, after, kk, an, beta)
        for c in range(cc):
            for i in range(bl):
                y[c, b0 + i] = x[c, b0 + i] * sp[c * bs + i]


@_jit_arcp
def _lrn_backward(g, x, dx, before, after, k, a_n, beta, coef, block):
    # t_c = dY_c x_c s_c^(-beta-1); dx_j = dY_j s_j^-beta + coef x_j sum over the mirrored window of t
    c_, m = x.shape
    bs, cc, mu = _u(block), _u(c_), _u(m)
    t = numpy.empty(cc * bs, dtype=x.dtype)      # also the scratch of _lrn_scales
    s = numpy.empty(cc * bs, dtype=x.dtype)
    sp = numpy.empty(cc * bs, dtype=x.dtype)
    acc = numpy.empty(bs, dtype=x.dtype)
    kk, an, co = x.dtype.type(k), x.dtype.type(a_n), x.dtype.type(coef)
    for b0 in range(_u(0), mu, bs):
        bl = min(bs, mu - b0)
        _lrn_scales(x, b0, bl, bs, t, s, sp, before, after, kk, an, beta)
        for c in range(cc):
            o = c * bs
            for i in range(bl):
                t[o + i] = g[c, b0 + i] * x[c, b0 + i]
            for i in range(bl):
                t[o + i] = t[o + i] * sp[o + i] / s[o + i]
        for j in range(cc):
            lo = _u(max(0, int(j) - after))
            hi = _u(min(c_, int(j) + before + 1))
            for i in range(bl):
                acc[i] = t[lo * bs + i]
            for d in range(lo + _u(1), hi):
                for i in range(bl):
                    acc[i] += t[d * bs + i]
            o = j * bs
            for i in range(bl):
                sp[o + i] = g[j, b0 + i] * sp[o + i]                  # dY_j s_j^-beta
            for i in range(bl):
                acc[i] = co * x[j, b0 + i] * acc[i] + sp[o + i]       # coef * x_j * window sum + that
            for i in range(bl):
                dx[j, b0 + i] = acc[i]


def lrn_forward(x, size, alpha, beta, k):
    """y, an (N, C, H, W) view of (C, N, H, W) memory, as the array code (nothing else is kept)."""
    n, c, h, w = x.shape
    y = memory.empty((c, n, h, w), x.dtype, x)
    _lrn_forward(x.transpose(1, 0, 2, 3).reshape(c, -1), y.reshape(c, -1),
                 size // 2, (size - 1) // 2, k, alpha / size, beta, _lrn_block(c))
    return y.transpose(1, 0, 2, 3)


def lrn_backward(grad_out, x, size, alpha, beta, k):
    """dx (N, C, H, W) (a view of (C, N, H, W) memory) for the input ``x`` of :func:`lrn_forward`."""
    n, c, h, w = x.shape
    rows = [numpy.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(c, -1) for a in (grad_out, x)]
    dx = memory.empty((c, n, h, w), x.dtype, x)
    _lrn_backward(*rows, dx.reshape(c, -1), size // 2, (size - 1) // 2, k, alpha / size, beta,
                  -2.0 * alpha * beta / size, _lrn_block(c))
    return dx.transpose(1, 0, 2, 3)


# ---------------------------------------------------------------------------- ReLU
@_jit
def _relu_forward(x, y, mask):
    # One pass: mask = x > 0 and y = x * mask (so a NaN stays NaN, as in torch and the array code).
    for i in range(_u(x.shape[0])):
        v = x[i]
        m = v > 0
        mask[i] = m
        y[i] = v * m


def _flat(a):
    """``a`` as a flat view in memory order when it is C-contiguous in (N, C, ...) or (C, N, ...)
    order, else None."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    if a.ndim >= 2 and a.swapaxes(0, 1).flags.c_contiguous:
        return a.swapaxes(0, 1).reshape(-1)
    return None


def relu_forward(x, y, mask) -> bool:
    """y = max(x, 0) and mask = x > 0 in one pass, into ``y`` and ``mask`` (arrays of x's shape and
    memory layout); False (nothing written) when x is not in one of the two contiguous layouts."""
    flat = [_flat(a) for a in (x, y, mask)]
    if any(f is None for f in flat) or x.strides != y.strides:
        return False
    _relu_forward(*flat)
    return True


# ---------------------------------------------------------------------------- SGD
@_jit
def _sgd(p, g, buf, lr, mu, wd, keep, nesterov, first):
    # One pass over the parameter instead of five array operations; per element
    # the same sequence of float operations as the array code, so the results agree.
    n = p.size
    for i in range(n):
        d = g[i] + wd * p[i] if wd != 0 else g[i]
        if mu != 0:
            if first:
                b = d
            else:
                b = buf[i] * mu
                b = b + keep * d if keep != 1 else b + d   # keep = 1 - dampening
            buf[i] = b
            d = d + mu * b if nesterov else b
        p[i] = p[i] - lr * d


def sgd_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """In-place SGD step on C-contiguous arrays (``buf`` may be a dummy when momentum is 0)."""
    dt = param.dtype.type
    _sgd(param.reshape(-1), grad.reshape(-1), buf.reshape(-1), dt(lr), dt(momentum), dt(weight_decay),
         dt(1.0 - dampening), nesterov, first)
