"""What the arithmetic guarantees: elementwise rounding bounds for the conformance suite.

Every bound has the form ``gamma_K * |f|_abs``: K is the longest chain of
roundings behind a result (a dot product of n terms counts n; each constant
that is not exact in the dtype one more), and ``|f|_abs`` is the same
computation with every operand replaced by its absolute value, computed in
float64 (Higham, "Accuracy and Stability of Numerical Algorithms", 2002,
Sections 3.1 and 3.5). The bound holds for any order of summation, with or
without fused multiply-adds, so it holds on every processor.
"""

from __future__ import annotations

import copy

import numpy

from npalexnet import config, nn
from npalexnet.gradcheck import gamma
from npalexnet.kernels import winograd as W


def run(layer, x, g):
    """``layer`` forward on x and backward of g: {"y", "dx", parameter names: gradients} as float64 host arrays."""
    layer.zero_grad()
    y = layer(x)
    dx = layer.backward(g)
    out = {"y": y, "dx": dx}
    out.update({name: p.grad for name, p in layer.named_parameters()})
    return {k: numpy.asarray(_host(v), dtype=numpy.float64) for k, v in out.items() if v is not None}


def _host(a):
    from npalexnet import asnumpy
    return asnumpy(a)


def abs_layer(layer):
    """A float64 copy of ``layer`` with the absolute values of its parameters."""
    twin = copy.deepcopy(layer).astype(numpy.float64).to("cpu")
    for _, p in twin.named_parameters():
        p.data = numpy.abs(p.data)
    return twin


def magnitudes(layer, x, g):
    """|f|_abs of a layer that is linear in its input and in its weights (conv, linear): the reference
    run on |x| with |W|, |b| and the upstream |g|, in float64."""
    with config.reference():
        return run(abs_layer(layer), numpy.abs(_host(x)).astype(numpy.float64),
                   numpy.abs(_host(g)).astype(numpy.float64))


def conv_depths(layer, x_shape):
    """Rounding depths of an im2col convolution: y sums Cg*KH*KW products (and adds the bias), dx
    sums OCg products per column entry and then up to ceil(KH/SH)*ceil(KW/SW) overlapping entries,
    dW and db sum over the N*OH*OW positions."""
    n, oc, oh, ow = layer.output_shape(x_shape)
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    overlaps = -(-kh // sh) * -(-kw // sw)
    positions = n * oh * ow
    return {"y": layer.in_channels // layer.groups * kh * kw + 1, "dx": oc // layer.groups + overlaps,
            "weight": positions, "bias": positions}


def linear_depths(layer, x_shape):
    n = x_shape[0]
    return {"y": layer.in_features + 1, "dx": layer.out_features, "weight": n, "bias": n}


def winograd_depths(spec, cg, ocg, tiles):
    """The longest chain of roundings behind each result of a Winograd convolution.

    Each transform is a product with a constant matrix, done either as one GEMM with the Kronecker
    matrix (the array code: alpha^2 terms per entry) or as two 1-D passes (numba: 2 alpha <= alpha^2),
    so the larger count bounds both; the matrices' entries themselves are rounded to the dtype (one
    more rounding for G's, which are not all dyadic; B's and A's are). Then: ``U * V`` one rounding,
    the sum over the Cg channels (or OCg, or the N*T tiles) one dot product of that length.
    """
    a2, r2, m2 = spec.alpha ** 2, spec.r ** 2, spec.m ** 2
    u = r2 + 1                                       # U = GG w, GG's entries rounded
    overlaps = -(-spec.alpha // spec.m) ** 2         # tiles that cover one input pixel
    return {"y": a2 + u + 1 + cg + a2 + 1,          # V, U, U*V, sum over Cg, A^T M A, + bias
            "dx": m2 + u + 1 + ocg + a2 + overlaps,   # dM, U^T dM over OCg, B dV B^T, overlapping tiles
            "weight": m2 + a2 + 1 + tiles + a2 + 1,   # dM, V, dM V^T over N*T tiles, GG^T dU over P
            "bias": tiles * m2}                         # the sum of dy over N, OH, OW


def winograd_magnitudes(spec, x, w, b, g, padding, groups):
    """|f|_abs of a Winograd convolution: the same algorithm with |BT|, |G|, |AT| on |x|, |w|, |b|, |g|."""
    abs_spec = W.Spec(spec.m, spec.r, numpy.abs(spec.AT), numpy.abs(spec.G), numpy.abs(spec.BT))
    y, state = W.conv_forward(*(numpy.abs(_host(a)).astype(numpy.float64) for a in (x, w, b)), padding, groups,
                              spec=abs_spec)
    weight, bias = nn.Parameter(numpy.abs(_host(w)).astype(numpy.float64)), nn.Parameter(numpy.abs(_host(b)))
    dx = W.conv_backward(numpy.abs(_host(g)).astype(numpy.float64), state, weight, bias, padding, groups)
    return {"y": numpy.array(y), "dx": numpy.array(dx), "weight": weight.grad, "bias": bias.grad}


def winograd_layer_bounds(layer, x, g, dtype):
    """Elementwise bounds on the error of a Winograd Conv2d's results (see :func:`winograd_depths`)."""
    spec = W.spec_for(layer)
    _, _, th, tw = W.tile_counts(x.shape[2], x.shape[3], layer.padding, spec)
    depths = winograd_depths(spec, layer.in_channels // layer.groups, layer.out_channels // layer.groups,
                             x.shape[0] * th * tw)
    bias = layer.bias.data if layer.bias is not None else numpy.zeros(layer.out_channels)
    mags = winograd_magnitudes(spec, x, layer.weight.data, bias, g, layer.padding, layer.groups)
    if layer.bias is None:
        mags.pop("bias")
    return {k: gamma(depths[k], dtype) * mags[k] for k in mags}


def bounds(depths, mags, dtype):
    """gamma_K |f|_abs for every result that has both a depth and a magnitude."""
    return {k: gamma(depths[k], dtype) * mags[k] for k in mags if k in depths}
