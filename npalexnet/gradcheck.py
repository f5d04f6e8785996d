"""Finite-difference gradient checks, independent of torch.

For a module ``f`` and a random upstream gradient ``G`` (never all ones: a
sum would hide transposed or permuted gradients) the scalar

.. math:: L(x, \\theta) = \\sum f(x; \\theta) \\cdot G

has the analytic gradients that ``backward(G)`` returns (input) and
accumulates (parameters). They are compared with central differences

.. math:: \\frac{\\partial L}{\\partial x_i} \\approx \\frac{L(x + h e_i) - L(x - h e_i)}{2h}

element by element for small arrays, and along random unit directions
``v`` (comparing ``(L(x+hv) - L(x-hv)) / 2h`` with ``<grad, v>``) for large
ones. Everything runs in float64 with ``h = 1e-6``, where the truncation
error of central differences is about ``h^2`` and the rounding error about
``1e-16 / h``: relative errors near 1e-8 or below mean the gradient is right.

The error measure is cs231n's ``max|a - b| / max(max(|a| + |b|), tiny)``.

Random layers (dropout) are made repeatable by reseeding the library
generator before every forward pass.
"""

from __future__ import annotations

import numpy

from . import backend, random_streams
from .backend import get_array_module


def unit_roundoff(dtype) -> float:
    """u of a floating dtype: half the distance from 1 to the next number (float32 2^-24, float64 2^-53)."""
    return float(numpy.finfo(numpy.dtype(dtype)).eps) / 2


def gamma(n: int, dtype) -> float:
    r"""Higham's :math:`\gamma_n = n u / (1 - n u)`: the relative error bound of n chained roundings.

    A sum or dot product of n terms computed in floating point, in any order,
    with or without fused multiply-adds, differs from the exact result by at
    most :math:`\gamma_n \sum |terms|` (Higham, "Accuracy and Stability of
    Numerical Algorithms", 2002, Section 3.1). The bound holds on every
    processor, which is why the float32 tests use it instead of a tolerance
    measured on one machine.
    """
    nu = int(n) * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f"gamma: n u = {nu} >= 1, no bound for n = {n} in {numpy.dtype(dtype)}")
    return nu / (1 - nu)


def relative_error(a, b, tiny: float = 1e-30) -> float:
    """``max|a - b| / max(max(|a| + |b|), tiny)``, a scale-free error of two arrays."""
    a = backend.asnumpy(a).astype(numpy.float64)
    b = backend.asnumpy(b).astype(numpy.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(numpy.max(numpy.abs(a - b)) / max(float(numpy.max(numpy.abs(a) + numpy.abs(b))), tiny))


def numerical_gradient(f, x, h: float = 1e-6):
    """Central-difference gradient of the scalar function ``f()`` with respect to ``x``.

    ``x`` is perturbed in place, one element at a time, and restored; ``f``
    must read it on every call. Returns an array of x's shape (NumPy).
    """
    grad = numpy.zeros(x.shape, dtype=numpy.float64)
    flat_index = numpy.ndindex(x.shape)
    for idx in flat_index:
        old = x[idx].item()
        x[idx] = old + h
        plus = float(f())
        x[idx] = old - h
        minus = float(f())
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def directional_errors(f, x, analytic, directions: int = 3, h: float = 1e-6, seed: int = 0):
    """Relative errors of ``<analytic, v>`` against ``(f(x+hv) - f(x-hv)) / 2h`` for random unit ``v``."""
    xp = get_array_module(x)
    rng = numpy.random.default_rng(seed)
    analytic = backend.asnumpy(analytic).astype(numpy.float64)
    errors = []
    original = x.copy()
    for _ in range(directions):
        v = rng.standard_normal(x.shape)
        v /= numpy.linalg.norm(v)
        v_dev = xp.asarray(v, dtype=x.dtype)
        x[...] = original + h * v_dev
        plus = float(f())
        x[...] = original - h * v_dev
        minus = float(f())
        x[...] = original
        numeric = (plus - minus) / (2 * h)
        exact = float(numpy.sum(analytic * v))
        errors.append(abs(numeric - exact) / max(abs(numeric) + abs(exact), 1e-30))
    return max(errors)


def check_module(module, x, grad_out=None, *, h: float = 1e-6, max_elements: int = 400,
                 directions: int = 3, seed: int = 0) -> dict[str, float]:
    """Compare ``module``'s backward with finite differences.

    Inputs:
        module: an npalexnet Module in float64 (``module.astype("float64")``).
        x: float64 input array (perturbed in place during the check and restored).
        grad_out: upstream gradient of the output's shape; random if omitted.
        max_elements: arrays up to this size are checked element-wise,
            larger ones along ``directions`` random directions.
    Returns:
        ``{"input": err, "<param name>": err, ...}``: relative errors.
    """
    if x.dtype != numpy.float64:
        raise TypeError(f"check_module needs a float64 input (finite differences in float32 are "
                        f"too coarse), got {x.dtype}")
    xp = get_array_module(x)
    rng = numpy.random.default_rng(seed)

    def forward():
        random_streams.manual_seed(seed)      # replay the same dropout masks every call
        return module(x)

    y = forward()
    if grad_out is None:
        grad_out = xp.asarray(rng.standard_normal(y.shape))

    def loss():
        return (forward() * grad_out).sum()

    module.zero_grad()
    forward()
    dx = module.backward(grad_out)
    targets = [("input", x, dx)]
    targets += [(name, p.data, p.grad) for name, p in module.named_parameters()]
    errors = {}
    for name, array, analytic in targets:
        if analytic is None:
            raise RuntimeError(f"check_module: no gradient was computed for {name}")
        if array.size <= max_elements:
            numeric = numerical_gradient(loss, array, h)
            errors[name] = relative_error(analytic, numeric)
        else:
            errors[name] = directional_errors(loss, array, analytic, directions, h, seed)
    return errors


def main(argv=None) -> int:
    """``python -m npalexnet.gradcheck``: every layer checked, as a table (see
    :mod:`npalexnet.inspect.gradcheck_report`). Returns the exit status."""
    from .inspect.gradcheck_report import main as report_main
    return report_main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
