"""numba-compiled CPU kernels for the hottest loops (NumPy arrays only).

The array code's im2col, col2im and max-pooling make one strided copy per
kernel offset; each copy walks the whole tensor, so a 3x3 kernel reads its
input nine times and allocates temporaries. The kernels here do the same
arithmetic in one pass, writing straight into the output: same shapes,
dtypes, memory layouts and results as the array code (tests compare them
element for element).

Threads: the kernels are serial on purpose. They are memory-bound, so a
second thread buys little, and a numba thread pool beside OpenBLAS's costs a
lot: measured on 2 cores, numba's OpenMP workers spinning after a kernel
slowed the next GEMMs so much that a training step of the CIFAR net took
580 ms with 2 numba threads against 390 ms with one (benchmarks/RESULTS.md).

numba is a dependency, but the package works without it: ``AVAILABLE`` is
False when it does not import, and ``NPALEXNET_NUMBA=0`` switches these
kernels off (the array code runs instead). Compiled code is cached on disk
(``cache=True``) so later processes start fast.
"""

from __future__ import annotations

import os

import numpy

try:
    import numba

    AVAILABLE = True
except ImportError:   # pragma: no cover - exercised by monkeypatching AVAILABLE
    numba = None
    AVAILABLE = False

ENV_VAR = "NPALEXNET_NUMBA"


def enabled() -> bool:
    """True when numba imports and ``NPALEXNET_NUMBA`` is not 0/false/off."""
    return AVAILABLE and os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def use_for(*arrays) -> bool:
    """Whether the numba kernels should handle these arrays (NumPy float32/float64, switched on)."""
    return enabled() and all(type(a) is numpy.ndarray and a.dtype in (numpy.float32, numpy.float64)
                             for a in arrays)


def _jit(fn):
    if not AVAILABLE:
        return fn
    return numba.njit(cache=True, nogil=True)(fn)


# ---------------------------------------------------------------------------- im2col / col2im
@_jit
def _im2col(x_cn, col, kh, kw, sh, sw, ph, pw):
    # x_cn: (C, N, H, W) view of the input; col: (C, KH, KW, N, OH, OW)
    c_, n_, h, w = x_cn.shape
    oh, ow = col.shape[4], col.shape[5]
    for c in range(c_):
        for ky in range(kh):
            for kx in range(kw):
                for n in range(n_):
                    for oy in range(oh):
                        iy = oy * sh + ky - ph
                        if iy < 0 or iy >= h:
                            for ox in range(ow):
                                col[c, ky, kx, n, oy, ox] = 0
                            continue
                        for ox in range(ow):
                            ix = ox * sw + kx - pw
                            col[c, ky, kx, n, oy, ox] = x_cn[c, n, iy, ix] if 0 <= ix < w else 0


@_jit
def _col2im(col, dx_cn, kh, kw, sh, sw, ph, pw):
    # col: (C, KH, KW, N, OH, OW); dx_cn: (C, N, H, W), zero on entry. One thread per channel: no races.
    c_, n_, h, w = dx_cn.shape
    oh, ow = col.shape[4], col.shape[5]
    for c in range(c_):
        for ky in range(kh):
            for kx in range(kw):
                for n in range(n_):
                    for oy in range(oh):
                        iy = oy * sh + ky - ph
                        if iy < 0 or iy >= h:
                            continue
                        for ox in range(ow):
                            ix = ox * sw + kx - pw
                            if 0 <= ix < w:
                                dx_cn[c, n, iy, ix] += col[c, ky, kx, n, oy, ox]


def im2col(x, kernel, stride, padding, out_hw):
    """numba im2col: same contract as :func:`npalexnet.kernels.im2col.im2col_array`."""
    n, c, _, _ = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    col = numpy.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    _im2col(x.transpose(1, 0, 2, 3), col, kh, kw, sh, sw, ph, pw)
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kernel, stride, padding, out_hw):
    """numba col2im: same contract as :func:`npalexnet.kernels.im2col.col2im_array`."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    dx_cn = numpy.zeros((c, n, h, w), dtype=col.dtype)
    _col2im(numpy.ascontiguousarray(col).reshape(c, kh, kw, n, oh, ow), dx_cn, kh, kw, sh, sw, ph, pw)
    return dx_cn.transpose(1, 0, 2, 3)


# ---------------------------------------------------------------------------- max-pooling
@_jit
def _maxpool_forward(x_cn, out, argmax, kh, kw, sh, sw, ph, pw):
    # Exactly the array code's rule: the window's offsets in row-major order, padding read as
    # -inf, a later value wins only if strictly greater (ties keep the first maximum; a NaN
    # neither wins nor is displaced once it leads).
    c_, n_, h, w = x_cn.shape
    oh, ow = out.shape[2], out.shape[3]
    for c in range(c_):
        for n in range(n_):
            for oy in range(oh):
                for ox in range(ow):
                    best = x_cn.dtype.type(0)
                    best_k = 0
                    for ky in range(kh):
                        iy = oy * sh + ky - ph
                        for kx in range(kw):
                            ix = ox * sw + kx - pw
                            v = x_cn[c, n, iy, ix] if 0 <= iy < h and 0 <= ix < w else -numpy.inf
                            if (ky == 0 and kx == 0) or v > best:
                                best = v
                                best_k = ky * kw + kx
                    out[c, n, oy, ox] = best
                    argmax[c, n, oy, ox] = best_k


@_jit
def _maxpool_backward(dy_cn, argmax, dx_cn, kh, kw, sh, sw, ph, pw):
    c_, n_, h, w = dx_cn.shape
    oh, ow = dy_cn.shape[2], dy_cn.shape[3]
    for c in range(c_):
        for n in range(n_):
            for oy in range(oh):
                for ox in range(ow):
                    k = argmax[c, n, oy, ox]
                    iy = oy * sh + k // kw - ph
                    ix = ox * sw + k % kw - pw
                    if 0 <= iy < h and 0 <= ix < w:   # a padded winner (all -inf) passes nothing on
                        dx_cn[c, n, iy, ix] += dy_cn[c, n, oy, ox]


def maxpool_forward(x, kernel, stride, padding, out_hw, index_dtype):
    """Values (C, N, OH, OW) and winning window offsets, as the array code of MaxPool2d."""
    n, c, _, _ = x.shape
    oh, ow = out_hw
    out = numpy.empty((c, n, oh, ow), dtype=x.dtype)
    argmax = numpy.empty((c, n, oh, ow), dtype=index_dtype)
    _maxpool_forward(x.transpose(1, 0, 2, 3), out, argmax, *kernel, *stride, *padding)
    return out, argmax


def maxpool_backward(grad_out, argmax, x_shape, kernel, stride, padding):
    """dx (N, C, H, W) (a view of (C, N, H, W) memory) routed to each window's winner."""
    n, c, h, w = x_shape
    dx_cn = numpy.zeros((c, n, h, w), dtype=grad_out.dtype)
    _maxpool_backward(grad_out.transpose(1, 0, 2, 3), argmax, dx_cn, *kernel, *stride, *padding)
    return dx_cn.transpose(1, 0, 2, 3)


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
