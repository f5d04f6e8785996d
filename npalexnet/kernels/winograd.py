r"""Winograd's minimal filtering F(2x2, 3x3): 3x3 stride-1 convolutions with 2.25x fewer multiply-adds.

Lavin and Gray (2016), "Fast Algorithms for Convolutional Neural Networks",
Section 4. Every 2x2 tile ``y`` of one output channel follows from the 4x4
input tile ``d`` it sees and the 3x3 filter ``g``:

.. math:: y = A^\top \left[ (G g G^\top) \odot (B^\top d B) \right] A

with the constant matrices :data:`BT` (4x4), :data:`G` (4x3) and :data:`AT`
(2x4). Write ``U = G g G^T`` (16 numbers per filter) and ``V = B^T d B``
(16 numbers per input tile and channel). The sum over input channels is, at
each of the 16 positions xi = (a, b) separately, a matrix product::

    M[xi] = U[xi] @ V[xi]          U[xi]: (OC, C),  V[xi]: (C, N*T)

so a convolution becomes 16 GEMMs of (OC x C x N*T) instead of one of
(OC x 9C x 4N*T): 36/16 = 2.25x fewer multiply-adds, plus cheap transforms.

Notation (see also :mod:`npalexnet.kernels.im2col`): P padding, OH = H + 2P - 2,
TH = ceil(OH/2) and TW = ceil(OW/2) tiles per image, T = TH*TW, NT = N*T,
G groups, Cg = C/G, OCg = OC/G; the 16 positions xi are flattened (a, b).

Layouts (all C-contiguous, chosen so that every step is one GEMM):

=========  =======================  ============================================
array      shape                    entry
=========  =======================  ============================================
d          (16, C, NT)              d[(i,j), c, (ty,tx,n)] = x_pad[n, c, 2ty+i, 2tx+j]
V          (16, C, NT)              ``BB @ d``: the transformed input tiles
U          (16, G, OCg, Cg)         ``GG @ w``: the transformed filters
M          (16, G, OCg, NT)         ``U @ V`` per (xi, group)
Y4         (4, OC, NT)              ``AA @ M``: y[oc, n, 2ty+i, 2tx+j] = Y4[(i,j), oc, (ty,tx,n)]
=========  =======================  ============================================

The columns run over (tile, image) with the image innermost: the transforms
then work on runs of N contiguous numbers, however small the feature map.

``BB = BT (x) BT``, ``GG = G (x) G`` and ``AA = AT (x) AT`` are Kronecker
products, so each transform of all tiles at once is a single small GEMM.

Backward: each step above is linear, so its backward is its transpose::

    dY4 = dy rearranged into tiles           dM = AA^T @ dY4
    dU  = dM @ V^T   (per xi, group)         dw = (dU as (16, OC*Cg))^T @ GG
    dV  = U^T @ dM   (per xi, group)         dd = BB^T @ dV
    dx  = the tiles of dd added back where they overlap (2 pixels), padding cut off

The tile extraction and its adjoint are im2col/col2im with a 4x4 window and
stride 2 (offset-major rows). On the CPU numba kernels fuse each data
transform with the rearrangement around it (tiles + ``BB``, ``AA`` + untiling
+ bias, and their adjoints); the array code here is the reference they are
tested against and the CuPy path. Rounding: the transforms use only 0, +-1/2 and +-1,
so float32 results agree with a direct convolution to a few ulps of the
largest term (tested against torch and against the im2col path).
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from . import numba_kernels
from . import workspace as pool

#: Input transform (Lavin and Gray, eq. 8).
BT = numpy.array([[1, 0, -1, 0],
                  [0, 1, 1, 0],
                  [0, -1, 1, 0],
                  [0, 1, 0, -1]], dtype=numpy.float64)
#: Filter transform.
G = numpy.array([[1, 0, 0],
                 [0.5, 0.5, 0.5],
                 [0.5, -0.5, 0.5],
                 [0, 0, 1]], dtype=numpy.float64)
#: Output transform.
AT = numpy.array([[1, 1, 1, 0],
                  [0, 1, -1, -1]], dtype=numpy.float64)

BB, GG, AA = numpy.kron(BT, BT), numpy.kron(G, G), numpy.kron(AT, AT)   # (16, 16), (16, 9), (4, 16)

_MATRICES: dict = {}


def _matrices(xp, dtype):
    """BB, GG, AA as arrays of ``xp``/``dtype`` (built once per pair)."""
    key = (xp.__name__, numpy.dtype(dtype).str)
    if key not in _MATRICES:
        _MATRICES[key] = tuple(xp.asarray(m, dtype=dtype) for m in (BB, GG, AA))
    return _MATRICES[key]


def applies(kernel_size, stride, dilation=(1, 1)) -> bool:
    """Whether F(2x2, 3x3) computes this convolution: 3x3 kernel, stride 1."""
    return tuple(kernel_size) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)


def tile_counts(h: int, w: int, padding) -> tuple[int, int, int, int]:
    """(OH, OW, TH, TW) of a 3x3 stride-1 convolution of an H x W input."""
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    return oh, ow, (oh + 1) // 2, (ow + 1) // 2


# ---------------------------------------------------------------------------- input tiles
def tiles_array(x, padding, th: int, tw: int, out):
    """``d`` (16, C, N*T) of the module docstring into ``out``, in plain array code."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ph, pw = padding
    x_pad = xp.zeros((c, 2 * th + 2, 2 * tw + 2, n), dtype=x.dtype)   # (C, rows, columns, N)
    x_pad[:, ph:ph + h, pw:pw + w, :] = x.transpose(1, 2, 3, 0)
    d = out.reshape(4, 4, c, th, tw, n)
    for i in range(4):
        for j in range(4):
            d[i, j] = x_pad[:, i:i + 2 * th:2, j:j + 2 * tw:2, :]
    return out


def untiles_array(dd, x_shape, padding, th: int, tw: int):
    """The adjoint of :func:`tiles_array`: dx (N, C, H, W) from ``dd`` (16, C, N*T), overlaps summed."""
    xp = get_array_module(dd)
    n, c, h, w = x_shape
    ph, pw = padding
    dx_pad = xp.zeros((c, 2 * th + 2, 2 * tw + 2, n), dtype=dd.dtype)
    d = dd.reshape(4, 4, c, th, tw, n)
    for i in range(4):
        for j in range(4):
            dx_pad[:, i:i + 2 * th:2, j:j + 2 * tw:2, :] += d[i, j]
    # (C, N, H, W) memory, the layout every other layer's gradient has.
    dx_cn = xp.ascontiguousarray(dx_pad[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2))
    return dx_cn.transpose(1, 0, 2, 3)


def output_transform(m, bias, out_shape, th: int, tw: int, workspace):
    """y (OC, N, OH, OW) = A^T M A per tile, cut to OH x OW, plus the bias."""
    if numba_kernels.use_for(m):
        out = pool.empty(out_shape, m.dtype, m)
        return numba_kernels.winograd_output_transform(m, bias, out_shape, th, tw, out=out)
    xp = get_array_module(m)
    oc, n, oh, ow = out_shape
    _, _, aa = _matrices(xp, m.dtype)
    y4 = pool.empty((4, m[0].size), m.dtype, m)
    xp.matmul(aa, m.reshape(16, -1), out=y4)
    # (i, j, oc, ty, tx, n) -> (oc, n, 2ty+i, 2tx+j), cut to OH x OW, plus the bias: one pass.
    tiled = y4.reshape(2, 2, oc, th, tw, n).transpose(2, 5, 3, 0, 4, 1).reshape(oc, n, 2 * th, 2 * tw)
    y = xp.empty(out_shape, dtype=m.dtype)
    if bias is None:
        y[...] = tiled[:, :, :oh, :ow]
    else:
        xp.add(tiled[:, :, :oh, :ow], bias.reshape(oc, 1, 1, 1), out=y)
    return y


def output_transform_backward(grad_out, th: int, tw: int, out, workspace):
    """dM (16, OC, N*T) into ``out``: the adjoint of :func:`output_transform` for dy (N, OC, OH, OW)."""
    if numba_kernels.use_for(grad_out):
        return numba_kernels.winograd_output_transform_backward(grad_out, th, tw, out)
    xp = get_array_module(grad_out)
    n, oc, oh, ow = grad_out.shape
    dy_cn = grad_out.transpose(1, 0, 2, 3)                                     # (OC, N, OH, OW)
    dy4 = pool.empty((4, oc * th * tw * n), grad_out.dtype, grad_out)
    tiles_view = dy4.reshape(2, 2, oc, th, tw, n).transpose(2, 5, 3, 0, 4, 1)  # (OC, N, TH, 2, TW, 2)
    if (oh, ow) == (2 * th, 2 * tw):
        tiles_view[...] = dy_cn.reshape(oc, n, th, 2, tw, 2)
    else:   # odd output size: the last tile row/column is half outside, its gradient zero
        padded = xp.zeros((oc, n, 2 * th, 2 * tw), dtype=grad_out.dtype)
        padded[:, :, :oh, :ow] = dy_cn
        tiles_view[...] = padded.reshape(oc, n, th, 2, tw, 2)
    _, _, aa = _matrices(xp, grad_out.dtype)
    xp.matmul(aa.T, dy4, out=out.reshape(16, -1))
    return out


def input_transform(x, padding, th, tw, workspace):
    """V (16, C, N*T) = BB @ tiles(x), in the workspace buffer ``"V"``."""
    n, c = x.shape[:2]
    shape = (16, c, n * th * tw)
    v = workspace.get("V", shape, x.dtype, x)
    if numba_kernels.use_for(x):
        numba_kernels.winograd_input_transform(x, padding, th, tw, v)
        return v
    bb, _, _ = _matrices(get_array_module(x), x.dtype)
    d = tiles_array(x, padding, th, tw, pool.empty(shape, x.dtype, x))
    get_array_module(x).matmul(bb, d.reshape(16, -1), out=v.reshape(16, -1))
    return v


def input_transform_backward(dv, x_shape, padding, th, tw, workspace):
    """dx (N, C, H, W) from dV (16, C, N*T): the adjoint of :func:`input_transform`."""
    if numba_kernels.use_for(dv):
        out = pool.empty_cn(x_shape, dv.dtype, dv)
        return numba_kernels.winograd_input_transform_backward(dv, x_shape, padding, th, tw, out=out)
    xp = get_array_module(dv)
    bb, _, _ = _matrices(xp, dv.dtype)
    dd = pool.empty(dv.shape, dv.dtype, dv)
    xp.matmul(bb.T, dv.reshape(16, -1), out=dd.reshape(16, -1))
    return untiles_array(dd, x_shape, padding, th, tw)


# ---------------------------------------------------------------------------- the convolution
def filter_transform(weight, groups: int):
    """U (16, G, OCg, Cg) = GG @ w for weights (OC, Cg, 3, 3)."""
    xp = get_array_module(weight)
    _, gg, _ = _matrices(xp, weight.dtype)
    oc, cg = weight.shape[:2]
    return (gg @ weight.reshape(oc * cg, 9).T).reshape(16, groups, oc // groups, cg)


def conv_forward(x, weight, bias, padding, groups: int, workspace):
    """y (N, OC, OH, OW) (a view of (OC, N, OH, OW) memory) and the cache for :func:`conv_backward`.

    Inputs:
        x: (N, C, H, W); weight: (OC, C/G, 3, 3); bias: (OC,) or None;
        padding: (PH, PW); groups: G; workspace: the layer's :class:`Workspace`.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    oc = weight.shape[0]
    oh, ow, th, tw = tile_counts(h, w, padding)
    nt = n * th * tw
    v = input_transform(x, padding, th, tw, workspace)                       # (16, C, NT)
    u = filter_transform(weight, groups)                                     # (16, G, OCg, Cg)
    m = pool.empty((16, groups, oc // groups, nt), x.dtype, x)
    xp.matmul(u, v.reshape(16, groups, c // groups, nt), out=m)              # 16*G GEMMs
    y = output_transform(m.reshape(16, oc, nt), bias, (oc, n, oh, ow), th, tw, workspace)
    return y.transpose(1, 0, 2, 3), (v, u, x.shape)


def conv_backward(grad_out, cache, weight_param, bias_param, padding, groups: int, workspace,
                  input_grad: bool = True):
    """Accumulate dw (and db) and return dx (N, C, H, W), or None when ``input_grad`` is False."""
    v, u, x_shape = cache
    xp = get_array_module(grad_out)
    n, c, h, w = x_shape
    oc = weight_param.shape[0]
    _, _, th, tw = tile_counts(h, w, padding)
    nt = n * th * tw
    if bias_param is not None:
        bias_param.accumulate_grad(grad_out.sum(axis=(0, 2, 3)))
    dm = pool.empty((16, groups, oc // groups, nt), grad_out.dtype, grad_out)
    output_transform_backward(grad_out, th, tw, dm.reshape(16, oc, nt), workspace)
    _, gg, _ = _matrices(xp, grad_out.dtype)
    v4 = v.reshape(16, groups, c // groups, nt)
    du = xp.matmul(dm, v4.transpose(0, 1, 3, 2))                            # (16, G, OCg, Cg)
    weight_param.accumulate_matmul(du.reshape(16, -1).T, gg)                 # (OC*Cg, 9) = (OC, Cg, 3, 3)
    if not input_grad:
        return None
    dv = v                                                                   # V is spent: reuse its memory
    xp.matmul(u.transpose(0, 1, 3, 2), dm, out=dv.reshape(16, groups, c // groups, nt))
    return input_transform_backward(dv, x_shape, padding, th, tw, workspace)
