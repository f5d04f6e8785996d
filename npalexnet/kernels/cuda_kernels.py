r"""Hand-written CUDA kernels for CuPy arrays: im2col, col2im, max-pooling, LRN, ReLU, dropout.

Each function has the contract of the array code it replaces (same shapes,
dtypes float32/float64, logical (N, C, H, W) inputs with *any* strides);
:mod:`.cuda_layers` wraps them as implementations of the layers' seams (off
by default). Notation: see :mod:`npalexnet.nn.im2col`.

Design (Chainer's GPU im2col/col2im, taken further):

* One thread per *output* element, so no two threads write the same
  address: col2im and the max-pool backward are gathers (each input pixel
  sums the windows that cover it), not scatters, and need no atomics. Their
  results do not depend on the launch configuration.
* Plain ``extern "C"`` RawKernels with a grid-stride loop, compiled from one
  source per dtype (``scalar_t``) and index type (``index_t``, the max-pool
  argmax). The same source text also compiles as C++ on the CPU
  (``tests/kernels/cuda_emulator.py`` defines ``threadIdx`` & co. and runs
  every thread), which is how the index arithmetic is tested without a GPU;
  the tests also compile it with NVRTC, CuPy's compiler, which needs no GPU.
* Inputs are read through their element strides, so the (C, N, H, W)
  memory layout that conv and ReLU produce is never copied. Outputs are
  C-contiguous in (C, N, ...) order, the order the array code produces, and
  are returned as views of the logical shape.
* Memory offsets are 64-bit (``long long``); coordinates inside one image
  are int; the thread index and its decomposition are int when the launch
  has fewer than about 2^31 threads (32-bit division is several times
  cheaper), else 64-bit: two compilations, chosen per launch.
* CuPy is imported lazily (first call), never at package import.

Layouts of the max-pool argmax and of the LRN cache are those of the array
code, so a forward on one path and a backward on the other agree.
"""

from __future__ import annotations

import numpy


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """torch's output size, (size + 2 padding - kernel) // stride + 1 (as npalexnet.nn.im2col's)."""
    return (size + 2 * padding - kernel) // stride + 1

# ----------------------------------------------------------------------------
# CUDA source
# ----------------------------------------------------------------------------

#: Prepended per compilation; scalar_t / index_t / POW are set per dtype.
SCALAR_PRELUDE = {
    "float32": "typedef float scalar_t;\n#define POW powf\n",
    "float64": "typedef double scalar_t;\n#define POW pow\n",
}
INDEX_PRELUDE = {
    "uint8": "typedef unsigned char index_t;\n",
    "int32": "typedef int index_t;\n",
}
#: Thread-index arithmetic: 32-bit when the launch is small enough (see :func:`ix_for`).
IX_PRELUDE = {
    "int32": "typedef int ix_t;\n",
    "int64": "typedef long long ix_t;\n",
}

SOURCE = r"""
// One thread per output element; a grid-stride loop, so any launch size is correct.
// ix_t, the type of i and of its decomposition, is int when the launch is small enough (ix_for
// in Python; integer division is much cheaper in 32 bits), else long long. Memory offsets are
// always long long.
#define NPA_LOOP(i, total) \
  for (ix_t i = (ix_t)blockIdx.x * (ix_t)blockDim.x + (ix_t)threadIdx.x; i < (ix_t)(total); \
       i += (ix_t)blockDim.x * (ix_t)gridDim.x)

// col (C*KH*KW, L) with L = N*OH*OW, C-contiguous; thread i writes col[i].
// col[(c, ky, kx), (n, oy, ox)] = x[n, c, oy*SH - PH + ky, ox*SW - PW + kx], 0 outside x.
extern "C" __global__ void npa_im2col(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ col, long long total, long long L,
    int N, int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
    long long sN, long long sC, long long sH, long long sW)
{
  NPA_LOOP(i, total) {
    const ix_t r = i / (ix_t)L;             // row: (c, ky, kx)
    const int j = (int)(i - r * (ix_t)L);   // column: (n, oy, ox)
    const int ox = j % OW;
    const int oy = (j / OW) % OH;
    const int n = j / (OW * OH);
    const int kx = (int)(r % KW);
    const int ky = (int)((r / KW) % KH);
    const int c = (int)(r / ((ix_t)KW * KH));
    const int y = oy * SH - PH + ky;
    const int xx = ox * SW - PW + kx;
    scalar_t v = 0;
    if (y >= 0 && y < H && xx >= 0 && xx < W) {
      v = x[n * sN + c * sC + y * sH + xx * sW];
    }
    col[i] = v;
  }
}

// dx (C, N, H, W) C-contiguous; thread i sums every col entry copied from its pixel:
// the windows (oy, ox) with oy*SH <= y+PH <= oy*SH + KH-1 (likewise ox), inside [0, OH) x [0, OW).
extern "C" __global__ void npa_col2im(
    const scalar_t* __restrict__ col, scalar_t* __restrict__ dx, long long total,
    int N, int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
    long long sRow, long long sCol)
{
  NPA_LOOP(i, total) {
    const int xx = (int)(i % W);
    ix_t t = i / W;
    const int y = (int)(t % H);
    t /= H;
    const int n = (int)(t % N);
    const int c = (int)(t / N);
    const int yp = y + PH, xp = xx + PW;    // coordinates in the padded image
    // first window: ceil((yp - KH + 1) / SH), written for yp - KH + 1 > 0 only (C division truncates)
    const int oy0 = yp >= KH ? (yp - KH) / SH + 1 : 0;
    const int oy1 = yp / SH + 1 < OH ? yp / SH + 1 : OH;   // one past the last window
    const int ox0 = xp >= KW ? (xp - KW) / SW + 1 : 0;
    const int ox1 = xp / SW + 1 < OW ? xp / SW + 1 : OW;
    scalar_t acc = 0;
    for (int oy = oy0; oy < oy1; ++oy) {
      const int ky = yp - oy * SH;
      for (int ox = ox0; ox < ox1; ++ox) {
        const int kx = xp - ox * SW;
        const long long row = ((long long)c * KH + ky) * KW + kx;
        const long long column = ((long long)n * OH + oy) * OW + ox;
        acc += col[row * sRow + column * sCol];
      }
    }
    dx[i] = acc;
  }
}

// y, argmax (C, N, OH, OW) C-contiguous; thread i owns element i. Windows are scanned in
// row-major order and only a strictly greater value wins (ties: the first maximum), except
// that a NaN always wins, as in torch; padding reads as -inf. Same results as the array code,
// NaN included.
extern "C" __global__ void npa_maxpool_fwd(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ out, index_t* __restrict__ argmax,
    long long total,
    int N, int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
    long long sN, long long sC, long long sH, long long sW, scalar_t neg_inf)
{
  NPA_LOOP(i, total) {
    const int ox = (int)(i % OW);
    ix_t t = i / OW;
    const int oy = (int)(t % OH);
    t /= OH;
    const int n = (int)(t % N);
    const int c = (int)(t / N);
    const scalar_t* xb = x + n * sN + c * sC;
    const int y0 = oy * SH - PH, x0 = ox * SW - PW;
    scalar_t best = neg_inf;
    int best_k = 0;
    for (int ky = 0; ky < KH; ++ky) {
      const int yy = y0 + ky;
      for (int kx = 0; kx < KW; ++kx) {
        const int xx = x0 + kx;
        const scalar_t v = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? xb[yy * sH + xx * sW] : neg_inf;
        const int k = ky * KW + kx;
        if (k == 0 || v > best || v != v) {
          best = v;
          best_k = k;
        }
      }
    }
    out[i] = best;
    argmax[i] = (index_t)best_k;
  }
}

// dx (C, N, H, W) C-contiguous; thread i gathers dy over the windows covering its pixel
// whose winner (argmax, (C, N, OH, OW) C-contiguous) is this pixel. dy: strides sN.. of (N, C, OH, OW).
extern "C" __global__ void npa_maxpool_bwd(
    const scalar_t* __restrict__ dy, const index_t* __restrict__ argmax, scalar_t* __restrict__ dx,
    long long total,
    int N, int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
    long long sN, long long sC, long long sH, long long sW)
{
  NPA_LOOP(i, total) {
    const int xx = (int)(i % W);
    ix_t t = i / W;
    const int y = (int)(t % H);
    t /= H;
    const int n = (int)(t % N);
    const int c = (int)(t / N);
    const int yp = y + PH, xp = xx + PW;
    const int oy0 = yp >= KH ? (yp - KH) / SH + 1 : 0;
    const int oy1 = yp / SH + 1 < OH ? yp / SH + 1 : OH;
    const int ox0 = xp >= KW ? (xp - KW) / SW + 1 : 0;
    const int ox1 = xp / SW + 1 < OW ? xp / SW + 1 : OW;
    const index_t* am = argmax + ((long long)c * N + n) * OH * OW;
    const scalar_t* g = dy + n * sN + c * sC;
    scalar_t acc = 0;
    for (int oy = oy0; oy < oy1; ++oy) {
      const int ky = yp - oy * SH;
      for (int ox = ox0; ox < ox1; ++ox) {
        const int kx = xp - ox * SW;
        if ((int)am[oy * OW + ox] == ky * KW + kx) {
          acc += g[oy * sH + ox * sW];
        }
      }
    }
    dx[i] = acc;
  }
}

// Thread i -> (n, c, h, w) of a C-contiguous (C, N, H, W) array if cn_order, else (N, C, H, W).
#define NPA_NCHW_OF(i) \
    const int w = (int)(i % W); \
    ix_t t = i / W; \
    const int h = (int)(t % H); \
    t /= H; \
    int n, c; \
    if (cn_order) { n = (int)(t % N); c = (int)(t / N); } \
    else { c = (int)(t % C); n = (int)(t / C); }

// LRN forward, torch semantics: s_c = k + alpha/n * sum_{c-before <= c' <= c+after} x_c'^2
// (channels outside [0, C) contribute nothing), y_c = x_c * s_c^-beta. Writes y, s, s^-beta,
// C-contiguous in thread order.
extern "C" __global__ void npa_lrn_fwd(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, scalar_t* __restrict__ scale,
    scalar_t* __restrict__ scale_pow, long long total, int N, int C, int H, int W, int cn_order,
    long long sN, long long sC, long long sH, long long sW,
    int before, int after, scalar_t alpha_n, scalar_t k, scalar_t neg_beta)
{
  NPA_LOOP(i, total) {
    NPA_NCHW_OF(i)
    const scalar_t* xb = x + n * sN + h * sH + w * sW;
    const int c0 = c - before > 0 ? c - before : 0;
    const int c1 = c + after < C - 1 ? c + after : C - 1;    // inclusive
    scalar_t sum = 0;
    for (int cc = c0; cc <= c1; ++cc) {
      const scalar_t v = xb[cc * sC];
      sum += v * v;
    }
    const scalar_t s = sum * alpha_n + k;
    const scalar_t p = POW(s, neg_beta);
    scale[i] = s;
    scale_pow[i] = p;
    y[i] = xb[c * sC] * p;
  }
}

// LRN backward: dx_j = dy_j p_j + coef * x_j * sum_{c in mirrored window of j} dy_c x_c p_c / s_c
// with p = s^-beta, coef = -2 alpha beta / n, window j-before .. j+after (before = (n-1)//2,
// after = n//2: the channels whose forward window contains j). dx C-contiguous in thread order.
extern "C" __global__ void npa_lrn_bwd(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
    const scalar_t* __restrict__ scale, const scalar_t* __restrict__ scale_pow,
    scalar_t* __restrict__ dx, long long total, int N, int C, int H, int W, int cn_order,
    long long gN, long long gC, long long gH, long long gW,
    long long xN, long long xC, long long xH, long long xW,
    long long sN, long long sC, long long sH, long long sW,
    long long pN, long long pC, long long pH, long long pW,
    int before, int after, scalar_t coef)
{
  NPA_LOOP(i, total) {
    NPA_NCHW_OF(i)
    const scalar_t* g = dy + n * gN + h * gH + w * gW;
    const scalar_t* xb = x + n * xN + h * xH + w * xW;
    const scalar_t* sb = scale + n * sN + h * sH + w * sW;
    const scalar_t* pb = scale_pow + n * pN + h * pH + w * pW;
    const int c0 = c - before > 0 ? c - before : 0;
    const int c1 = c + after < C - 1 ? c + after : C - 1;
    scalar_t acc = 0;
    for (int cc = c0; cc <= c1; ++cc) {
      acc += g[cc * gC] * xb[cc * xC] * pb[cc * pC] / sb[cc * sC];
    }
    dx[i] = acc * xb[c * xC] * coef + g[c * gC] * pb[c * pC];
  }
}
"""

#: Element-wise kernels (cupy.ElementwiseKernel: in_params, out_params, operation).
#: ``y = x * m`` rather than ``m ? x : 0`` keeps the array code's results exactly
#: (ReLU(-inf) = nan there, as x * False is).
ELEMENTWISE = {
    # ReLU forward in one pass: the output and the boolean mask the backward needs.
    "npa_relu_fwd": ("T x", "T y, bool m", "m = x > (T)0; y = x * (T)m;"),
    # Dropout (forward and backward): y = a * m * (1 / (1 - p)), as (a * m) * scale.
    "npa_mask_scale": ("T a, bool m, T scale", "T y", "y = a * (T)m * scale;"),
    # Dropout's forward with its mask drawn in the same pass: element (r, j) of the (R, F) C-ordered input,
    # i = r F + j, keeps x when u >= p, with u the uniform number npalexnet.random_streams gives it from the
    # row's key k (broadcast from (R, 1)): splitmix64's j-th output from state k (k + (j+1) gamma, mixed),
    # its top 24 bits (float32) or 53 bits (float64) times 2^-24 or 2^-53: exact, so the same bits.
    "npa_dropout_fwd": ("T x, uint64 key, int64 row_len, T p, T scale", "T y, bool m",
                        "unsigned long long z = key + (unsigned long long)(i % row_len + 1) * 0x9E3779B97F4A7C15ull; "
                        "z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; z = (z ^ (z >> 27)) * 0x94D049BB133111EBull; "
                        "z = z ^ (z >> 31); "
                        "T u = sizeof(T) == 4 ? (T)(z >> 40) * (T)5.9604644775390625e-08 "
                        ": (T)(z >> 11) * (T)1.1102230246251565404236316680908203125e-16; "
                        "m = u >= p; y = x * (T)m * scale;"),
    # torch.optim.SGD's update, p and buf read and written in place, the reference's float operations
    # per element in its order (npalexnet.optim.SGD.update; keep = 1 - dampening). Without momentum:
    "npa_sgd": ("T g, T lr, T wd", "T p", "T d = wd != (T)0 ? g + wd * p : g; p = p - lr * d;"),
    # With momentum (first: the buffer starts as d, as torch's does):
    "npa_sgd_momentum": ("T g, T lr, T mu, T wd, T keep, bool nesterov, bool first", "T p, T buf",
                         "T d = wd != (T)0 ? g + wd * p : g; "
                         "T b = first ? d : (keep != (T)1 ? buf * mu + keep * d : buf * mu + d); "
                         "buf = b; d = nesterov ? d + mu * b : b; p = p - lr * d;"),
}

BLOCK = 256
MAX_BLOCKS = 65536      # grid-stride loop beyond this

# ----------------------------------------------------------------------------
# Launching: CuPy on a GPU; tests swap in the CPU emulator (same source as C++)
# ----------------------------------------------------------------------------


def source_for(scalar: str, index: str = "uint8", ix: str = "int64") -> str:
    """The full CUDA source for one dtype (``"float32"``/``"float64"``), argmax type and thread-index type."""
    return SCALAR_PRELUDE[scalar] + INDEX_PRELUDE[index] + IX_PRELUDE[ix] + SOURCE


def ix_for(total: int) -> str:
    """``"int32"`` thread indices when ``total`` threads leave room for the grid-stride step, else ``"int64"``."""
    return "int32" if total + BLOCK * MAX_BLOCKS < 2**31 - 1 else "int64"


class CupyLauncher:
    """Compiles :data:`SOURCE` once per (dtype, index type, thread-index type) with NVRTC and launches it."""

    def __init__(self):
        self._modules = {}
        self._functions = {}
        self._elementwise = {}

    def launch(self, name, scalar, index, total, args):
        if total == 0:
            return
        key = (scalar, index, ix_for(total))
        fn = self._functions.get((key, name))
        if fn is None:
            if key not in self._modules:
                import cupy
                self._modules[key] = cupy.RawModule(code=source_for(*key))
            fn = self._functions[(key, name)] = self._modules[key].get_function(name)
        blocks = min((total + BLOCK - 1) // BLOCK, MAX_BLOCKS)
        fn((blocks,), (BLOCK,), args)

    def elementwise(self, name, *args):
        import cupy
        if name not in self._elementwise:
            in_params, out_params, operation = ELEMENTWISE[name]
            self._elementwise[name] = cupy.ElementwiseKernel(in_params, out_params, operation, name)
        return self._elementwise[name](*args)


#: Replaced by the tests' CPU emulator; nothing else should touch it.
launcher = CupyLauncher()


def _array_module(a):
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    return numpy


def _scalar_name(a) -> str:
    name = numpy.dtype(a.dtype).name
    if name not in SCALAR_PRELUDE:
        raise TypeError(f"CUDA kernels support float32 and float64, got {name}")
    return name


def _estrides(a):
    """Strides in elements, as int64 kernel arguments."""
    return tuple(numpy.int64(s // a.itemsize) for s in a.strides)


def _i32(*values):
    for v in values:
        if not 0 <= v < 2**31:
            raise ValueError(f"size {v} does not fit the kernels' 32-bit coordinates")
    return tuple(numpy.int32(v) for v in values)


def _geometry(x_shape, kernel, stride, padding):
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"input of spatial size {(h, w)} is smaller than the kernel {(kh, kw)}")
    return oh, ow, _i32(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)


# ----------------------------------------------------------------------------
# The kernels, with the contracts of the array code they replace
# ----------------------------------------------------------------------------


def im2col(x, kernel, stride, padding, out=None):
    """As :func:`npalexnet.nn.im2col.im2col`: (N, C, H, W) -> (C*KH*KW, N*OH*OW).

    ``out``: a C-contiguous array of that shape and x's dtype to write into (a workspace), else a new one.
    """
    xp = _array_module(x)
    scalar = _scalar_name(x)
    n, c, _, _ = x.shape
    (kh, kw) = kernel
    oh, ow, dims = _geometry(x.shape, kernel, stride, padding)
    rows, cols = c * kh * kw, n * oh * ow
    _i32(rows, cols)
    if out is None:
        col = xp.empty((rows, cols), dtype=x.dtype)
    elif tuple(out.shape) != (rows, cols) or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ValueError(f"im2col: out must be a C-contiguous {(rows, cols)} {x.dtype} array, got "
                         f"{tuple(out.shape)} {out.dtype}{'' if out.flags.c_contiguous else ' (not contiguous)'}")
    else:
        col = out
    launcher.launch("npa_im2col", scalar, "uint8", col.size,
                    (x, col, numpy.int64(col.size), numpy.int64(cols)) + dims + _estrides(x))
    return col


def col2im(col, x_shape, kernel, stride, padding):
    """As :func:`npalexnet.nn.im2col.col2im`: (C*KH*KW, N*OH*OW) -> (N, C, H, W).

    The result is a (N, C, H, W) view of a C-contiguous (C, N, H, W) array.
    """
    xp = _array_module(col)
    scalar = _scalar_name(col)
    n, c, h, w = x_shape
    (kh, kw) = kernel
    oh, ow, dims = _geometry(x_shape, kernel, stride, padding)
    if tuple(col.shape) != (c * kh * kw, n * oh * ow):
        raise ValueError(f"col2im: col has shape {tuple(col.shape)}, expected {(c * kh * kw, n * oh * ow)}")
    dx = xp.empty((c, n, h, w), dtype=col.dtype)
    launcher.launch("npa_col2im", scalar, "uint8", dx.size,
                    (col, dx, numpy.int64(dx.size)) + dims + _estrides(col))
    return dx.transpose(1, 0, 2, 3)


def maxpool_index_dtype(kernel):
    """The argmax dtype of the array code: uint8 up to 255 window positions, else int32."""
    kh, kw = kernel
    return numpy.dtype(numpy.uint8 if kh * kw <= 255 else numpy.int32)


def maxpool2d_forward(x, kernel, stride, padding):
    """Max-pool forward as :class:`npalexnet.nn.MaxPool2d` computes it.

    Inputs: x (N, C, H, W), any strides. Returns ``(out, argmax)``, both
    C-contiguous (C, N, OH, OW): the window maximum and the row-major index
    ``ky*KW + kx`` of its first occurrence (padding is -inf).
    """
    xp = _array_module(x)
    scalar = _scalar_name(x)
    n, c, _, _ = x.shape
    oh, ow, dims = _geometry(x.shape, kernel, stride, padding)
    index = maxpool_index_dtype(kernel)
    out = xp.empty((c, n, oh, ow), dtype=x.dtype)
    argmax = xp.empty((c, n, oh, ow), dtype=index)
    launcher.launch("npa_maxpool_fwd", scalar, index.name, out.size,
                    (x, out, argmax, numpy.int64(out.size)) + dims + _estrides(x)
                    + (x.dtype.type(-numpy.inf),))
    return out, argmax


def maxpool2d_backward(grad_out, argmax, x_shape, kernel, stride, padding):
    """Max-pool backward: dx (N, C, H, W) (a view of a C-contiguous (C, N, H, W) array).

    Inputs: grad_out (N, C, OH, OW) any strides; argmax as returned by
    :func:`maxpool2d_forward` (or the array code): (C, N, OH, OW).
    """
    xp = _array_module(grad_out)
    scalar = _scalar_name(grad_out)
    n, c, h, w = x_shape
    oh, ow, dims = _geometry(x_shape, kernel, stride, padding)
    if tuple(argmax.shape) != (c, n, oh, ow) or tuple(grad_out.shape) != (n, c, oh, ow):
        raise ValueError(f"maxpool2d_backward: grad_out {tuple(grad_out.shape)} / argmax "
                         f"{tuple(argmax.shape)} do not fit input {tuple(x_shape)}")
    index = numpy.dtype(argmax.dtype)
    if index.name not in INDEX_PRELUDE:
        raise TypeError(f"argmax dtype {index} not supported")
    argmax = xp.ascontiguousarray(argmax)
    dx = xp.empty((c, n, h, w), dtype=grad_out.dtype)
    launcher.launch("npa_maxpool_bwd", scalar, index.name, dx.size,
                    (grad_out, argmax, dx, numpy.int64(dx.size)) + dims + _estrides(grad_out))
    return dx.transpose(1, 0, 2, 3)


def _cn_order(x) -> bool:
    """Whether ``x`` (N, C, ...) is laid out as (C, N, ...) memory (its channel stride is the larger):
    the thread order and output layout the kernels then use."""
    return x.ndim >= 2 and abs(x.strides[1]) > abs(x.strides[0]) and x.shape[0] > 1


def _empty_in_order(xp, shape, dtype, cn_order):
    """``(buffer, view)``: a C-contiguous buffer in thread order ((C, N, ...) or (N, C, ...)), and its
    view of the logical shape."""
    if cn_order:
        buffer = xp.empty((shape[1], shape[0]) + tuple(shape[2:]), dtype=dtype)
        return buffer, buffer.swapaxes(0, 1)
    buffer = xp.empty(tuple(shape), dtype=dtype)
    return buffer, buffer


def lrn_forward(x, size, alpha, beta, k):
    """LRN forward as :class:`npalexnet.nn.LocalResponseNorm`: returns ``(y, scale, scale_pow)``.

    x (N, C, H, W), any strides; the three results have x's shape and are
    C-contiguous in (C, N, H, W) order when x is, else in (N, C, H, W) order.
    """
    xp = _array_module(x)
    scalar = _scalar_name(x)
    if x.ndim != 4:
        raise ValueError(f"lrn_forward: expected a 4-D input, got shape {tuple(x.shape)}")
    cn_order = _cn_order(x)
    (y_buf, y), (s_buf, scale), (p_buf, scale_pow) = (
        _empty_in_order(xp, x.shape, x.dtype, cn_order) for _ in range(3))
    t = x.dtype.type
    launcher.launch("npa_lrn_fwd", scalar, "uint8", x.size,
                    (x, y_buf, s_buf, p_buf, numpy.int64(x.size)) + _i32(*x.shape, int(cn_order))
                    + _estrides(x) + _i32(size // 2, (size - 1) // 2)
                    + (t(alpha / size), t(k), t(-beta)))
    return y, scale, scale_pow


def lrn_backward(grad_out, x, scale, scale_pow, size, alpha, beta):
    """LRN backward: dx of x's shape, C-contiguous in the order :func:`lrn_forward` uses."""
    xp = _array_module(grad_out)
    scalar = _scalar_name(grad_out)
    shapes = {tuple(a.shape) for a in (grad_out, x, scale, scale_pow)}
    if len(shapes) != 1 or grad_out.ndim != 4:
        raise ValueError(f"lrn_backward: expected four 4-D arrays of one shape, got {shapes}")
    cn_order = _cn_order(x)
    dx_buf, dx = _empty_in_order(xp, x.shape, grad_out.dtype, cn_order)
    launcher.launch("npa_lrn_bwd", scalar, "uint8", x.size,
                    (grad_out, x, scale, scale_pow, dx_buf, numpy.int64(x.size)) + _i32(*x.shape, int(cn_order))
                    + _estrides(grad_out) + _estrides(x) + _estrides(scale) + _estrides(scale_pow)
                    + _i32((size - 1) // 2, size // 2)
                    + (x.dtype.type(-2.0 * alpha * beta / size),))
    return dx


def relu_forward(x):
    """``(x * (x > 0), x > 0)`` in one pass: the ReLU output and its mask, in x's memory layout.

    The outputs are allocated here and passed to the kernel: CuPy would allocate them C-ordered,
    turning the (C, N, H, W) memory a convolution writes into (N, C, H, W) memory, which the next
    layer then reads with strides.
    """
    _scalar_name(x)
    cn_order = _cn_order(x)
    xp = _array_module(x)
    (_, y), (_, mask) = (_empty_in_order(xp, x.shape, dtype, cn_order) for dtype in (x.dtype, numpy.bool_))
    launcher.elementwise("npa_relu_fwd", x, y, mask)
    return y, mask


def dropout_forward(x, keys, p, scale):
    """Dropout's forward on a C-contiguous ``x`` with its mask drawn in the same pass: ``(y, mask)``,
    ``mask = u >= p`` with ``u`` the uniform numbers of :func:`npalexnet.random_streams.uniform_from_keys`
    for the (N,) row ``keys`` (host or device; the same bits), ``y = x * mask * scale``."""
    t = numpy.dtype(_scalar_name(x)).type
    if not x.flags.c_contiguous or x.ndim < 1 or len(keys) != x.shape[0]:
        raise ValueError(f"dropout_forward: a C-contiguous input and one key per row, got {tuple(x.shape)} "
                         f"with {len(keys)} keys")
    xp = _array_module(x)
    rows = x.shape[0]
    flat = x.reshape(rows, -1)
    y, mask = xp.empty_like(flat), xp.empty(flat.shape, dtype=bool)
    keys = xp.asarray(keys, dtype=xp.uint64).reshape(rows, 1)
    launcher.elementwise("npa_dropout_fwd", flat, keys, numpy.int64(flat.shape[1]), t(p), t(scale), y, mask)
    return y.reshape(x.shape), mask.reshape(x.shape)


def sgd_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov, first):
    """One SGD step on ``param`` (and its momentum buffer ``buf``) in place, in one pass: as
    :meth:`npalexnet.optim.SGD.update` (``buf`` is unused, and may be None, when momentum is 0;
    ``first``: the buffer's first step, which sets it to the decayed gradient)."""
    t = numpy.dtype(_scalar_name(param)).type
    if grad.dtype != param.dtype or grad.shape != param.shape:
        raise ValueError(f"sgd_update: gradient {tuple(grad.shape)} {grad.dtype} for a parameter "
                         f"{tuple(param.shape)} {param.dtype}")
    if momentum == 0:
        launcher.elementwise("npa_sgd", grad, t(lr), t(weight_decay), param)
    else:
        launcher.elementwise("npa_sgd_momentum", grad, t(lr), t(momentum), t(weight_decay), t(1.0 - dampening),
                             numpy.bool_(nesterov), numpy.bool_(first), param, buf)


def mask_scale(a, mask, scale):
    """``a * mask * scale`` in one pass (dropout forward and backward; ReLU backward with scale 1),
    in a's memory layout (see :func:`relu_forward`)."""
    _scalar_name(a)
    _, out = _empty_in_order(_array_module(a), a.shape, a.dtype, _cn_order(a))
    launcher.elementwise("npa_mask_scale", a, mask, a.dtype.type(scale), out)
    return out
