r"""Winograd's minimal filtering: 3x3 and 5x5 stride-1 convolutions with 2.25-4.6x fewer multiply-adds.

Lavin and Gray (2016), "Fast Algorithms for Convolutional Neural Networks",
Section 4. In F(2x2, 3x3), the default, every 2x2 tile ``y`` of one output
channel follows from the 4x4 input tile ``d`` it sees and the 3x3 filter ``g``:

.. math:: y = A^\top \left[ (G g G^\top) \odot (B^\top d B) \right] A

with the constant matrices :data:`BT` (4x4), :data:`G` (4x3) and :data:`AT`
(2x4). Write ``U = G g G^T`` (16 numbers per filter) and ``V = B^T d B``
(16 numbers per input tile and channel). The sum over input channels is, at
each of the 16 positions xi = (a, b) separately, a matrix product::

    M[xi] = U[xi] @ V[xi]          U[xi]: (OC, C),  V[xi]: (C, N*T)

so a convolution becomes 16 GEMMs of (OC x C x N*T) instead of one of
(OC x 9C x 4N*T): 36/16 = 2.25x fewer multiply-adds, plus cheap transforms.
The same holds for any F(m x m, r x r) with tiles of alpha = m + r - 1 and
P = alpha^2 positions (:class:`Spec`; the matrices come from the Toom-Cook
construction, :func:`_toom_cook`): F(3x3, 5x5) (P = 49, 4.6x fewer
multiply-adds), the default for 5x5 kernels, and the opt-in F(4x4, 3x3) (P = 36,
4x) and F(2x2, 5x5) (P = 36, 2.78x); :func:`choose_spec` says why. These cost
float32 accuracy (:data:`POINTS`). Below, 16 stands for P and 2 for m.

Notation (see also :mod:`npalexnet.nn.im2col`): PH, PW padding, OH = H + 2PH - 2,
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
transform, for every tile, with the rearrangement around it (tiles + ``BB``,
``AA`` + untiling + bias, and their adjoints), as two 1-D passes; the array
code here is the reference they are tested against and the CuPy path.
Rounding: F(2x2, 3x3)'s transforms use only 0, +-1/2 and +-1, so float32
results agree with a direct convolution to a few ulps of the largest term;
the larger tiles cost more (benchmarks/RESULTS.md). All are tested against
torch, against the layer's im2col reference and for their float32 error.

:class:`WinogradConv` is the implementation of the ``"conv2d"`` seam
(:mod:`npalexnet.kernels`): it applies to 3x3 and 5x5 stride-1 layers on the
CPU by default (``conv="auto"``), everywhere with ``conv="winograd"`` or
``Conv2d(algorithm="winograd")``, never with ``"im2col"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from .. import config
from ..backend import get_array_module
from . import memory, numba_kernels
from .seam import Implementation, on_cpu_float, register

#: Interpolation points of the Toom-Cook construction, in the order they are used (and infinity);
#: F(m, r) takes the first m + r - 2. -1/2 rather than Lavin and Gray's -2: a point and its
#: reciprocal keep the entries of BT and G balanced (Barabasz et al. (2020), "Error analysis and
#: improving the accuracy of Winograd convolution for deep neural networks"); the float32 errors
#: of both sets are in benchmarks/RESULTS.md, and a test holds the difference.
POINTS = (0.0, 1.0, -1.0, 2.0, -0.5, 0.5)


def _toom_cook(m: int, r: int, points=POINTS):
    """AT (m, a), G (a, r), BT (a, a) of F(m, r), a = m + r - 1, from ``points`` and infinity.

    AT evaluates the product polynomial at the points (its last column is the point at
    infinity), G evaluates the filter divided by each point's f_j = prod_(l != j) (p_j - p_l);
    BT is then the unique matrix for which ``AT [(G g) * (BT d)]`` is the valid correlation
    of d (a) with g (r): solved from that identity in float64 and rounded (its entries are
    small multiples of 1/4).
    """
    a = m + r - 1
    if a - 1 > len(points):
        raise ValueError(f"F({m}, {r}) needs {a - 1} finite points, only {len(points)} are given")
    p = numpy.array(points[:a - 1], dtype=numpy.float64)
    at = numpy.zeros((m, a))
    for i in range(m):
        at[i, :a - 1] = p ** i
    at[m - 1, a - 1] = 1.0
    f = numpy.array([numpy.prod([pj - pl for l, pl in enumerate(p) if l != j]) for j, pj in enumerate(p)])
    g = numpy.zeros((a, r))
    for j in range(a - 1):
        g[j] = p[j] ** numpy.arange(r) / abs(f[j])
    g[a - 1, r - 1] = 1.0   # dividing by |f_j| leaves f_j's sign to BT: G's rows start positive
    # sum_j AT[i, j] G[j, k] BT[j, l] = [l == i + k] for all i < m, k < r, l < a
    system = numpy.zeros((m * r * a, a * a))
    rhs = numpy.zeros(m * r * a)
    row = 0
    for i in range(m):
        for k in range(r):
            for l in range(a):
                system[row].reshape(a, a)[:, l] = at[i] * g[:, k]
                rhs[row] = 1.0 if l == i + k else 0.0
                row += 1
    bt = numpy.linalg.lstsq(system, rhs, rcond=None)[0].reshape(a, a)
    bt = numpy.round(bt * 64) / 64 + 0.0   # exact dyadic entries; + 0.0 turns -0.0 into 0.0
    return at, g, bt


@dataclass(frozen=True, eq=False)
class Spec:
    """F(m x m, r x r): m x m outputs per tile from (m + r - 1)^2 products; the 2-D matrices are
    Kronecker products of the 1-D ones (``BB`` (P, P), ``GG`` (P, r*r), ``AA`` (m*m, P), P = a*a).

    Two specs are the same only if they are the same object (``eq=False``): F(2, 3) from other
    interpolation points is another algorithm, and the caches of cast matrices are keyed by spec."""

    m: int
    r: int
    AT: numpy.ndarray = field(repr=False, compare=False)
    G: numpy.ndarray = field(repr=False, compare=False)
    BT: numpy.ndarray = field(repr=False, compare=False)

    @property
    def alpha(self) -> int:
        """Input tile side, m + r - 1."""
        return self.m + self.r - 1

    @property
    def positions(self) -> int:
        """P = alpha^2: products per tile, and GEMMs per convolution."""
        return self.alpha ** 2

    @property
    def BB(self):
        return numpy.kron(self.BT, self.BT)

    @property
    def GG(self):
        return numpy.kron(self.G, self.G)

    @property
    def AA(self):
        return numpy.kron(self.AT, self.AT)

    def multiply_ratio(self) -> float:
        """Multiply-adds of a direct convolution per Winograd multiply-add (for whole tiles)."""
        return (self.m * self.r) ** 2 / self.positions


def make_spec(m: int, r: int, points=POINTS) -> Spec:
    """F(m x m, r x r) from the Toom-Cook construction with ``points`` (default :data:`POINTS`)."""
    at, g, bt = _toom_cook(m, r, points)
    return Spec(m, r, at, g, bt)


#: The tiles this library has: F(2x2, 3x3) (Lavin and Gray's first; exact to a few ulps),
#: F(4x4, 3x3) (4x fewer multiplies), F(2x2, 5x5) and F(3x3, 5x5) (the default for 5x5).
#: F(2x2, 3x3) is written out as in the paper (eq. 8); the construction gives the same
#: matrices up to the sign of the point at infinity.
F23 = Spec(2, 3,
           AT=numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=numpy.float64),
           G=numpy.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=numpy.float64),
           BT=numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=numpy.float64))
F43, F25, F35 = make_spec(4, 3), make_spec(2, 5), make_spec(3, 5)
SPECS = {(2, 3): F23, (4, 3): F43, (2, 5): F25, (3, 5): F35}

#: F(2x2, 3x3)'s matrices under their usual names (Lavin and Gray, eq. 8): BT (4, 4), G (4, 3),
#: AT (2, 4) and their Kronecker squares BB (16, 16), GG (16, 9), AA (4, 16).
BT, G, AT = F23.BT, F23.G, F23.AT
BB, GG, AA = F23.BB, F23.GG, F23.AA

_MATRICES: dict = {}


def _matrices(xp, dtype, spec: Spec = F23):
    """BB, GG, AA of ``spec`` as arrays of ``xp``/``dtype`` (built once per triple)."""
    key = (xp.__name__, numpy.dtype(dtype).str, spec)
    if key not in _MATRICES:
        _MATRICES[key] = tuple(xp.asarray(mat, dtype=dtype) for mat in (spec.BB, spec.GG, spec.AA))
    return _MATRICES[key]


def applies(kernel_size, stride, dilation=(1, 1)) -> bool:
    """Whether a Winograd algorithm computes this convolution: 3x3 or 5x5 square kernel, stride 1."""
    return (tuple(kernel_size) in ((3, 3), (5, 5)) and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1))


def choose_spec(kernel_size) -> Spec:
    """The default tile: F(2x2, 3x3) for 3x3 kernels, F(3x3, 5x5) for 5x5.

    F(3x3, 5x5): its 3x3 tiles cover the paper net's 27x27 conv2 exactly, its
    49 GEMMs do 1.78x fewer multiply-adds than F(2x2, 5x5)'s 36, and its V and
    M are 45% smaller; it was the fastest on the paper's conv2, at a float32
    error about that of the F(4x4, 3x3) that cuDNN and oneDNN train with
    (benchmarks/RESULTS.md). F(4x4, 3x3) does fewer multiply-adds than
    F(2x2, 3x3) on whole tiles but costs float32 several times the rounding
    error, and its 36 GEMMs of a quarter of the columns were no faster on the
    paper net's 13x13 maps: it is asked for explicitly (``Conv2d.winograd_tile = 4``).
    """
    return F35 if tuple(kernel_size) == (5, 5) else F23


def spec_for(layer) -> Spec:
    """The tile of a :class:`~npalexnet.nn.Conv2d`: its ``winograd_tile`` (m of F(m x m, r x r)) when
    set, else :func:`choose_spec`."""
    r = layer.kernel_size[0]
    if layer.winograd_tile is None:
        return choose_spec(layer.kernel_size)
    spec = SPECS.get((layer.winograd_tile, r))
    if spec is None:
        raise ValueError(f"{layer!r}: no Winograd tile F({layer.winograd_tile}, {r}); "
                         f"available: {sorted(m for m, k in SPECS if k == r)}")
    return spec


def tile_counts(h: int, w: int, padding, spec: Spec = F23) -> tuple[int, int, int, int]:
    """(OH, OW, TH, TW) of an r x r stride-1 convolution of an H x W input."""
    oh, ow = h + 2 * padding[0] - spec.r + 1, w + 2 * padding[1] - spec.r + 1
    return oh, ow, -(-oh // spec.m), -(-ow // spec.m)


# ---------------------------------------------------------------------------- input tiles
def tiles_array(x, padding, th: int, tw: int, out, *, spec: Spec = F23):
    """``d`` (P, C, N*T) of the module docstring into ``out``, in plain array code."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ph, pw = padding
    m, a = spec.m, spec.alpha
    x_pad = xp.zeros((c, m * th + a - m, m * tw + a - m, n), dtype=x.dtype)   # (C, rows, columns, N)
    x_pad[:, ph:ph + h, pw:pw + w, :] = x.transpose(1, 2, 3, 0)
    d = out.reshape(a, a, c, th, tw, n)
    for i in range(a):
        for j in range(a):
            d[i, j] = x_pad[:, i:i + m * th:m, j:j + m * tw:m, :]
    return out


def untiles_array(dd, x_shape, padding, th: int, tw: int, *, spec: Spec = F23):
    """The adjoint of :func:`tiles_array`: dx (N, C, H, W) from ``dd`` (P, C, N*T), overlaps summed."""
    xp = get_array_module(dd)
    n, c, h, w = x_shape
    ph, pw = padding
    m, a = spec.m, spec.alpha
    dx_pad = xp.zeros((c, m * th + a - m, m * tw + a - m, n), dtype=dd.dtype)
    d = dd.reshape(a, a, c, th, tw, n)
    for i in range(a):
        for j in range(a):
            dx_pad[:, i:i + m * th:m, j:j + m * tw:m, :] += d[i, j]
    # (C, N, H, W) memory, the layout every other layer's gradient has.
    dx_cn = memory.empty((c, n, h, w), dd.dtype, dd)
    dx_cn[...] = dx_pad[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2)
    return dx_cn.transpose(1, 0, 2, 3)


def output_transform(m, bias, out_shape, th: int, tw: int, *, spec: Spec = F23, numba: bool = False):
    """y (OC, N, OH, OW) = A^T M A per tile, cut to OH x OW, plus the bias."""
    if numba:   # the fused numba transforms
        out = memory.empty(out_shape, m.dtype, m)
        return numba_kernels.winograd_output_transform(m, bias, out_shape, th, tw, out=out, spec=spec)
    xp = get_array_module(m)
    oc, n, oh, ow = out_shape
    t = spec.m
    _, _, aa = _matrices(xp, m.dtype, spec)
    y4 = memory.empty((t * t, m[0].size), m.dtype, m)
    xp.matmul(aa, m.reshape(spec.positions, -1), out=y4)
    # (i, j, oc, ty, tx, n) -> (oc, n, m*ty+i, m*tx+j), cut to OH x OW, plus the bias: one pass.
    tiled = y4.reshape(t, t, oc, th, tw, n).transpose(2, 5, 3, 0, 4, 1).reshape(oc, n, t * th, t * tw)
    y = memory.empty(out_shape, m.dtype, m)
    if bias is None:
        y[...] = tiled[:, :, :oh, :ow]
    else:
        xp.add(tiled[:, :, :oh, :ow], bias.reshape(oc, 1, 1, 1), out=y)
    return y


def output_transform_backward(grad_out, th: int, tw: int, out, *, spec: Spec = F23, numba: bool = False):
    """dM (P, OC, N*T) into ``out``: the adjoint of :func:`output_transform` for dy (N, OC, OH, OW)."""
    if numba:   # the fused numba transforms
        return numba_kernels.winograd_output_transform_backward(grad_out, th, tw, out, spec=spec)
    xp = get_array_module(grad_out)
    n, oc, oh, ow = grad_out.shape
    t = spec.m
    dy_cn = grad_out.transpose(1, 0, 2, 3)                                     # (OC, N, OH, OW)
    dy4 = memory.empty((t * t, oc * th * tw * n), grad_out.dtype, grad_out)
    tiles_view = dy4.reshape(t, t, oc, th, tw, n).transpose(2, 5, 3, 0, 4, 1)  # (OC, N, TH, m, TW, m)
    if (oh, ow) == (t * th, t * tw):
        tiles_view[...] = dy_cn.reshape(oc, n, th, t, tw, t)
    else:   # the last tile row/column reaches past the output: its gradient there is zero
        padded = xp.zeros((oc, n, t * th, t * tw), dtype=grad_out.dtype)
        padded[:, :, :oh, :ow] = dy_cn
        tiles_view[...] = padded.reshape(oc, n, th, t, tw, t)
    _, _, aa = _matrices(xp, grad_out.dtype, spec)
    xp.matmul(aa.T, dy4, out=out.reshape(spec.positions, -1))
    return out


def input_transform(x, padding, th, tw, *, spec: Spec = F23, numba: bool = False):
    """V (P, C, N*T) = BB @ tiles(x) (kept for backward, where dV overwrites it)."""
    n, c = x.shape[:2]
    shape = (spec.positions, c, n * th * tw)
    v = memory.empty(shape, x.dtype, x)
    if numba:   # the fused numba transforms
        numba_kernels.winograd_input_transform(x, padding, th, tw, v, spec=spec)
        return v
    bb, _, _ = _matrices(get_array_module(x), x.dtype, spec)
    d = tiles_array(x, padding, th, tw, memory.empty(shape, x.dtype, x), spec=spec)
    get_array_module(x).matmul(bb, d.reshape(spec.positions, -1), out=v.reshape(spec.positions, -1))
    return v


def input_transform_backward(dv, x_shape, padding, th, tw, *, spec: Spec = F23, numba: bool = False):
    """dx (N, C, H, W) from dV (P, C, N*T): the adjoint of :func:`input_transform`."""
    if numba:   # the fused numba transforms
        out = memory.empty_cn(x_shape, dv.dtype, dv)
        return numba_kernels.winograd_input_transform_backward(dv, x_shape, padding, th, tw, out=out, spec=spec)
    xp = get_array_module(dv)
    bb, _, _ = _matrices(xp, dv.dtype, spec)
    dd = memory.empty(dv.shape, dv.dtype, dv)
    xp.matmul(bb.T, dv.reshape(spec.positions, -1), out=dd.reshape(spec.positions, -1))
    return untiles_array(dd, x_shape, padding, th, tw, spec=spec)


# ---------------------------------------------------------------------------- the convolution
def filter_transform(weight, groups: int, spec: Spec = F23):
    """U (P, G, OCg, Cg) = GG @ w for weights (OC, Cg, r, r)."""
    xp = get_array_module(weight)
    _, gg, _ = _matrices(xp, weight.dtype, spec)
    oc, cg = weight.shape[:2]
    return (gg @ weight.reshape(oc * cg, spec.r * spec.r).T).reshape(spec.positions, groups, oc // groups, cg)


def conv_forward(x, weight, bias, padding, groups: int, *, spec: Spec = F23, numba: bool = False):
    """y (N, OC, OH, OW) (a view of (OC, N, OH, OW) memory) and the state for :func:`conv_backward`.

    Inputs:
        x: (N, C, H, W); weight: (OC, C/G, r, r); bias: (OC,) or None;
        padding: (PH, PW); groups: G;
        spec: the tile (:data:`F23`, :data:`F43`, :data:`F25` or :data:`F35`, matching r);
        numba: the fused numba transforms (NumPy float arrays) instead of the array code.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    oc = weight.shape[0]
    p = spec.positions
    oh, ow, th, tw = tile_counts(h, w, padding, spec)
    nt = n * th * tw
    v = input_transform(x, padding, th, tw, spec=spec, numba=numba)           # (P, C, NT)
    u = filter_transform(weight, groups, spec)                               # (P, G, OCg, Cg)
    m = memory.empty((p, groups, oc // groups, nt), x.dtype, x)
    xp.matmul(u, v.reshape(p, groups, c // groups, nt), out=m)               # P*G GEMMs
    y = output_transform(m.reshape(p, oc, nt), bias, (oc, n, oh, ow), th, tw, spec=spec, numba=numba)
    return y.transpose(1, 0, 2, 3), (v, u, x.shape, spec, numba)


def conv_backward(grad_out, state, weight_param, bias_param, padding, groups: int, input_grad: bool = True):
    """Accumulate dw (and db) and return dx (N, C, H, W), or None when ``input_grad`` is False."""
    v, u, x_shape, spec, numba = state
    xp = get_array_module(grad_out)
    n, c, h, w = x_shape
    oc, cg = weight_param.shape[:2]
    p = spec.positions
    _, _, th, tw = tile_counts(h, w, padding, spec)
    nt = n * th * tw
    if bias_param is not None:
        bias_param.accumulate_grad(grad_out.sum(axis=(0, 2, 3)))
    dm = memory.empty((p, groups, oc // groups, nt), grad_out.dtype, grad_out)
    output_transform_backward(grad_out, th, tw, dm.reshape(p, oc, nt), spec=spec, numba=numba)
    _, gg, _ = _matrices(xp, grad_out.dtype, spec)
    v4 = v.reshape(p, groups, c // groups, nt)
    du = xp.matmul(dm, v4.transpose(0, 1, 3, 2))                            # (P, G, OCg, Cg)
    dw = memory.empty(weight_param.shape, grad_out.dtype, grad_out)
    xp.matmul(du.reshape(p, -1).T, gg, out=dw.reshape(oc * cg, spec.r * spec.r))   # (OC*Cg, r*r)
    weight_param.accumulate_grad(dw)
    if not input_grad:
        return None
    dv = v                                                                   # V is spent: reuse its memory
    xp.matmul(u.transpose(0, 1, 3, 2), dm, out=dv.reshape(p, groups, c // groups, nt))
    return input_transform_backward(dv, x_shape, padding, th, tw, spec=spec, numba=numba)


class WinogradConv(Implementation):
    """The ``"conv2d"`` seam's Winograd implementation (see the module docstring)."""

    seam, name = "conv2d", "Winograd"
    devices = ("cpu", "cuda")

    def applies(self, layer, x, settings) -> bool:
        fits = applies(layer.kernel_size, layer.stride)
        if layer.algorithm == "winograd":
            if not fits:
                raise ValueError(f"{layer!r}: algorithm 'winograd' needs a 3x3 or 5x5 kernel with stride 1")
            return True
        if layer.algorithm == "im2col" or not fits or settings.conv == "im2col":
            return False
        return settings.conv == "winograd" or on_cpu_float(x)   # auto: on the CPU

    @staticmethod
    def _numba(x, settings) -> bool:
        return settings.numba and numba_kernels.AVAILABLE and on_cpu_float(x)

    def describe(self, layer, x, settings) -> str:
        spec = spec_for(layer)
        tile = f"Winograd F({spec.m}x{spec.m}, {spec.r}x{spec.r})"
        return tile + (", numba transforms" if self._numba(x, settings) else "")

    def forward(self, layer, x):
        bias = None if layer.bias is None else layer.bias.data
        return conv_forward(x, layer.weight.data, bias, layer.padding, layer.groups, spec=spec_for(layer),
                            numba=self._numba(x, config.current()))

    def backward(self, layer, state, grad_out, input_grad):
        return conv_backward(grad_out, state, layer.weight, layer.bias, layer.padding, layer.groups, input_grad)


register(WinogradConv())
