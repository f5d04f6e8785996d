r"""Finite-difference gradient checks, independent of torch: the one place the library differentiates numerically.

For a module ``f`` and a random upstream gradient ``G`` (never all ones: a
sum would hide transposed or permuted gradients) the scalar

.. math:: L(x, \theta) = \sum f(x; \theta) \cdot G

has the analytic gradients that ``backward(G)`` returns (input) and
accumulates (parameters). Every check here is built on one central difference
of L along a direction ``v`` (:func:`central_difference`):

.. math:: \frac{L(x + h v) - L(x - h v)}{2h} \approx \langle \nabla L, v \rangle

* element by element (``v = e_i``, :func:`numerical_gradient`) for small arrays;
* along a few unit directions (:func:`along_directions`) for large ones, where
  ``v`` mixes the analytic gradient's direction with a random one: a random
  direction alone sees only ``|g| / sqrt(size)`` of a gradient with millions
  of entries, below the rounding error of the loss, while a gradient wrong in
  direction or scale still disagrees with the difference along ``v``.

Everything runs in float64 with ``h = 1e-6``: the truncation error of a
central difference is about ``h^2`` times the third derivative, the rounding
error about ``u / h`` (``u = 2^-53 = 1.1e-16``), so a right gradient agrees to
about 1e-8 or better (:data:`TOLERANCE` = 1e-7). Through a whole network a
few of its thousands of ReLU and max-pool kinks fall within ``h`` of a
direction's segment; :func:`along_directions` detects such a segment (the
difference taken with ``h/2`` disagrees with the one taken with ``h``) and
draws another direction, and :data:`TOLERANCE_NETWORK` = 1e-5 leaves room for
kinks just outside the segment (a wrong gradient gives 1e-3 or more).

The error measure is cs231n's ``max|a - b| / max(max(|a| + |b|), tiny)``
(:func:`relative_error`). :func:`unit_roundoff` and :func:`gamma` give the
rounding bounds that the float32 comparisons are derived from.

Random layers (dropout) are made repeatable by reseeding the library
generator before every forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .. import backend, random_streams
from ..backend import get_array_module

#: The step h of every central difference (float64).
STEP = 1e-6
#: One layer on a tie-free input: truncation ~h^2 = 1e-12 and rounding ~u/h = 1e-10, relative to the
#: gradient's scale; 1e-7 leaves three orders of magnitude for curvature and ill-scaled entries.
TOLERANCE = 1e-7
#: A whole network along directions: kinks (ReLU, max-pool) within a few h of the segment.
TOLERANCE_NETWORK = 1e-5


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
    """``max|a - b| / max(max(|a| + |b|), tiny)``, a scale-free error of two arrays (NumPy, CuPy or torch)."""
    a = backend.asnumpy(a).astype(numpy.float64)
    b = backend.asnumpy(b).astype(numpy.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(numpy.max(numpy.abs(a - b)) / max(float(numpy.max(numpy.abs(a) + numpy.abs(b))), tiny))


def tie_free(shape, seed: int = 0) -> numpy.ndarray:
    """Distinct float64 values in (-2, 2), at least 4/size apart and none 0: no ties for max-pool and no
    ReLU input at its kink, so a difference with a small h never crosses one (a shuffled ``(k + 1/4) / size``)."""
    rng = numpy.random.default_rng(seed)
    size = int(numpy.prod(shape))
    return ((rng.permutation(size).reshape(shape) + 0.25) / size - 0.5) * 4


def shifted(f, array):
    """``evaluate(delta)``: ``f()`` with ``array`` shifted in place by ``delta``, then restored.

    Inputs:
        f: a function of no arguments that reads ``array`` on every call and returns a scalar.
        array: a float64 NumPy or CuPy array (a parameter's data, a layer's input).
    Returns:
        ``evaluate(delta) -> float`` for a float64 host array ``delta`` of ``array``'s shape.
    """
    xp = get_array_module(array)
    original = array.copy()

    def evaluate(delta):
        array[...] = original + xp.asarray(delta)
        try:
            return float(f())
        finally:
            array[...] = original

    return evaluate


def central_difference(evaluate, direction, h: float = STEP) -> float:
    """``(evaluate(h v) - evaluate(-h v)) / 2h``: the derivative of the loss along ``v = direction``."""
    return (evaluate(h * direction) - evaluate(-h * direction)) / (2 * h)


def numerical_gradient(f, x, h: float = STEP):
    """Central-difference gradient of the scalar function ``f()`` with respect to ``x``, element by element.

    ``x`` is shifted in place along each unit vector ``e_i`` and restored; ``f``
    must read it on every call. Returns a float64 NumPy array of x's shape.
    """
    evaluate = shifted(f, x)
    grad = numpy.zeros(x.shape, dtype=numpy.float64)
    e = numpy.zeros(x.shape, dtype=numpy.float64)
    for idx in numpy.ndindex(x.shape):
        e[idx] = 1.0
        grad[idx] = central_difference(evaluate, e, h)
        e[idx] = 0.0
    return grad


@dataclass
class DirectionalCheck:
    """The result of :func:`along_directions`.

    Attributes:
        error: the largest relative error of ``<g, v>`` against the central difference over the directions.
        redrawn: directions drawn again because their segment crossed a kink.
    """

    error: float
    redrawn: int = 0


def _scalar_error(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a) + abs(b), 1e-300)


def along_directions(evaluate, analytic, rng, *, live=None, directions: int = 3, h: float = STEP,
                     tolerance: float = TOLERANCE, retries: int = 5) -> DirectionalCheck:
    """Compare ``<analytic, v>`` with the central difference along ``directions`` unit vectors ``v``.

    Inputs:
        evaluate: ``evaluate(delta)``, the loss with the checked array shifted by
            ``delta`` (a float64 host array of its shape), e.g. :func:`shifted`.
        analytic: the gradient under test, of the checked array's shape.
        rng: a NumPy Generator for the directions.
        live: optional bool mask; entries where it is False are left still.
        tolerance: a direction within it passes at once; above it the
            difference is taken again with ``h/2``.
    Returns:
        :class:`DirectionalCheck`.

    ``v`` is the unit gradient plus a random unit vector, normalised (see the
    module docstring). Kinks: along a segment of length 2h a ReLU input or a
    max-pool pair may cross over, and the loss is not differentiable there.
    Along a smooth segment the differences with ``h`` and ``h/2`` agree to
    ~h^2, so a disagreement with ``g`` is the gradient's and is reported;
    across a kink they do not, and the direction is drawn again (at most
    ``retries`` times).
    """
    g = backend.asnumpy(analytic).astype(numpy.float64)
    live = numpy.ones(g.shape, dtype=bool) if live is None else numpy.asarray(live, dtype=bool)
    if not live.any():
        raise ValueError("along_directions: every entry is masked, nothing to check")
    g_live = g * live
    g_unit = g_live / max(float(numpy.linalg.norm(g_live)), 1e-300)
    worst, redrawn = 0.0, 0
    for _ in range(directions):
        for _attempt in range(retries + 1):
            r = rng.standard_normal(g.shape) * live
            v = g_unit + r / numpy.linalg.norm(r)
            v /= numpy.linalg.norm(v)
            exact = float(numpy.sum(g * v))
            numeric = central_difference(evaluate, v, h)
            err = _scalar_error(numeric, exact)
            if err <= tolerance:
                break
            half = central_difference(evaluate, v, h / 2)
            if _scalar_error(half, numeric) < 0.1 * err:
                break            # smooth along v: the disagreement is the gradient's
            redrawn += 1
        worst = max(worst, err)
    return DirectionalCheck(worst, redrawn)


def check_module(module, x, grad_out=None, *, targets=None, h: float = STEP, max_elements: int = 400,
                 directions: int = 3, tolerance: float = TOLERANCE, seed: int = 0) -> dict[str, float]:
    """Compare ``module``'s backward with finite differences.

    Inputs:
        module: an npalexnet Module in float64 (``module.astype("float64")``).
        x: float64 input array (shifted in place during the check and restored).
        grad_out: upstream gradient of the output's shape; random if omitted
            (a random number for a loss, whose output is a scalar).
        targets: the second input of a loss (``module(x, targets)``), e.g. class indices.
        max_elements: arrays up to this size are checked element-wise,
            larger ones along ``directions`` directions (:func:`along_directions`,
            with ``tolerance`` deciding when to look for a kink).
    Returns:
        ``{"input": err, "<param name>": err, ...}``: relative errors.
    """
    if x.dtype != numpy.float64:
        raise TypeError(f"check_module needs a float64 input (finite differences in float32 are "
                        f"too coarse), got {x.dtype}")
    xp = get_array_module(x)
    rng = numpy.random.default_rng(seed)
    inputs = (x,) if targets is None else (x, targets)

    def forward():
        random_streams.manual_seed(seed)      # replay the same dropout masks every call
        return module(*inputs)

    y = forward()
    if grad_out is None:
        grad_out = xp.asarray(rng.standard_normal(y.shape))

    def loss():
        return (forward() * grad_out).sum()

    module.zero_grad()
    forward()
    dx = module.backward(grad_out)
    targets_checked = [("input", x, dx)]
    targets_checked += [(name, p.data, p.grad) for name, p in module.named_parameters()]
    errors = {}
    for name, array, analytic in targets_checked:
        if analytic is None:
            raise RuntimeError(f"check_module: no gradient was computed for {name}")
        if array.size <= max_elements:
            errors[name] = relative_error(analytic, numerical_gradient(loss, array, h))
        else:
            errors[name] = along_directions(shifted(loss, array), analytic, rng, directions=directions, h=h,
                                            tolerance=tolerance).error
    return errors
