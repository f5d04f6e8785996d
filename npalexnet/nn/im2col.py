"""im2col and col2im: convolution as one matrix product.

Notation (used by every convolution and pooling docstring in the package)::

    N      batch size
    C      input channels
    H, W   input height and width
    KH, KW kernel height and width
    SH, SW stride
    PH, PW zero padding on each side
    OH, OW output height and width: OH = (H + 2*PH - KH) // SH + 1 (torch rounds down)
    L      OH * OW, output positions per image

``im2col`` unfolds every KH x KW window of the (padded) input into a column::

    col[(c, ky, kx), (n, oy, ox)] = x_pad[n, c, oy*SH + ky, ox*SW + kx]

so ``col`` has shape ``(C*KH*KW, N*OH*OW)``. The row order (c, ky, kx)
matches a torch weight of shape ``(OC, C, KH, KW)`` reshaped to
``(OC, C*KH*KW)``, so a convolution is ``W2 @ col`` with no transpose of the
weight, and the column order (n, oy, ox) puts the whole batch in one GEMM
(one large product is far faster than N small ones). Channels come first in
both, so a grouped convolution takes contiguous row blocks of ``col``.

``col2im`` is the adjoint of ``im2col`` (its transpose as a linear map): every
column entry is added back to the pixel it was copied from, so pixels covered
by several windows receive the sum of their gradients. It is the same loop
over the KH*KW kernel offsets with ``+=`` on strided slices (Chainer's
formulation): no scatter, no ``np.add.at``, and it runs unchanged on NumPy
and CuPy.

This is the readable reference, and what runs whenever no faster
implementation applies (:mod:`npalexnet.kernels`: numba kernels on the CPU,
CUDA kernels on a GPU, each tested against these two functions).
"""

from __future__ import annotations


from ..backend import get_array_module


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``(size + 2*padding - kernel) // stride + 1``: torch's rule (rounds down)."""
    return (size + 2 * padding - kernel) // stride + 1


def output_shape(input_shape, channels: int, kernel, stride, padding) -> tuple:
    """(N, channels, OH, OW) of a window operation (convolution, pooling) on (N, C, H, W)."""
    n, _, h, w = input_shape
    return (n, channels) + tuple(conv_output_size(size, k, s, p)
                                 for size, k, s, p in zip((h, w), kernel, stride, padding))


def im2col(x, kernel, stride, padding):
    """Unfold windows of ``x`` into columns, in plain array code.

    Inputs:
        x: (N, C, H, W) array, any memory layout.
        kernel, stride, padding: (KH, KW), (SH, SW), (PH, PW).
    Returns:
        col: (C*KH*KW, N*OH*OW) C-contiguous array of x's dtype.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    # (C, N, H, W) view: the copies below then write col in its final order.
    x_cn = x.transpose(1, 0, 2, 3)
    if ph or pw:
        x_pad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
        x_pad[:, :, ph:ph + h, pw:pw + w] = x_cn
    else:
        x_pad = x_cn
    col = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for ky in range(kh):
        y_end = ky + sh * (oh - 1) + 1
        for kx in range(kw):
            x_end = kx + sw * (ow - 1) + 1
            col[:, ky, kx] = x_pad[:, :, ky:y_end:sh, kx:x_end:sw]
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kernel, stride, padding):
    """Fold columns back into an image, summing overlaps: the adjoint of im2col.

    Inputs:
        col: (C*KH*KW, N*OH*OW) array (e.g. the gradient with respect to col).
        x_shape: (N, C, H, W) of the image im2col unfolded.
        kernel, stride, padding: as for :func:`im2col`.
    Returns:
        dx: (N, C, H, W) array with ``dx[n, c, i, j] = sum of col entries copied from x[n, c, i, j]``.
    """
    xp = get_array_module(col)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    col = col.reshape(c, kh, kw, n, oh, ow)
    dx_pad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for ky in range(kh):
        y_end = ky + sh * (oh - 1) + 1
        for kx in range(kw):
            x_end = kx + sw * (ow - 1) + 1
            dx_pad[:, :, ky:y_end:sh, kx:x_end:sw] += col[:, ky, kx]
    # Back to the logical (N, C, H, W) shape; the (C, N, ...) memory layout is
    # kept (a strided view), as every layer accepts any layout.
    return dx_pad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)
