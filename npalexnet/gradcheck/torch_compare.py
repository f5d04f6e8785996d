r"""The one comparison with PyTorch: the same computation in both libraries, every array held to one table.

:func:`check_against_torch` runs an npalexnet module and its torch equivalent
(same weights, same input, same random upstream gradient, never ``.sum()``)
and compares the output, the input gradient and every parameter gradient with
:func:`compare`, which the study tools also call on arrays they recorded
themselves (``examples/inspect_backprop.py``).

Tolerances (:data:`TOLERANCES`), per dtype, on the scale-free error
``max|a - b| / max(|a| + |b|)`` (:func:`~npalexnet.gradcheck.relative_error`):
(forward output, gradients). They are multiples of the unit roundoff u
(float32 2^-24 = 6.0e-8, float64 2^-53 = 1.1e-16), not measurements: float64
1e-10 is ~1e6 u; float32 1e-5 is ~170 u for outputs and 5e-5 ~840 u for
gradients, room for the rounding of each layer's products and sums (whose
errors grow like sqrt(n) u for random inputs, and whose worst case
:math:`\gamma_n = n u` the order of summation and FMA use may approach), times
the amplification of Winograd's transforms (F(3x3, 5x5), the largest tile a
default uses, costs about 10x im2col's error).

Sums whose terms cancel (a bias gradient before BatchNorm, whose exact value
is 0) have no meaningful relative error; they are held instead to the bound
of a sum, :func:`sum_bound`, which no relative tolerance can give.

This module imports torch (and :mod:`.torch_twin`); nothing on the library's
main path imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy
import torch

from .. import backend, nn
from .finite_differences import gamma, relative_error
from .torch_twin import copy_weights, to_tensor, torch_dtype

#: (forward output, gradients) tolerance per dtype; the derivation is in the module docstring.
TOLERANCES = {
    numpy.float64: (1e-10, 1e-10),
    numpy.float32: (1e-5, 5e-5),
}


def tolerances(dtype) -> tuple[float, float]:
    """``(output, gradient)`` tolerances of ``dtype`` (any spelling: ``"float32"``, ``numpy.float32``, ...)."""
    key = numpy.dtype(dtype).type
    if key not in TOLERANCES:
        raise ValueError(f"no tolerance for {numpy.dtype(dtype)}: expected one of "
                         f"{', '.join(numpy.dtype(k).name for k in TOLERANCES)}")
    return TOLERANCES[key]


def sum_bound(ours, theirs, dtype):
    """How far two correct float computations of a bias gradient ``db_c = sum_i dY[i, c]`` can be apart.

    Inputs:
        ours, theirs: the upstream gradients dY each library summed, (N, C, ...) or (N, C)
            (or 1-D for a single sum); NumPy, CuPy or torch.
        dtype: the dtype the sums were computed in.
    Returns:
        (C,) float64 (a scalar for 1-D inputs): the elementwise bound

        .. math:: |db_c - db'_c| \\le \\sum_i |dY_i - dY'_i| + \\gamma_{n-1} \\sum_i (|dY_i| + |dY'_i|)

    A sum in any order, with or without FMA, differs from the exact one by at
    most gamma_{n-1} of the sum of magnitudes (Higham 2002, Section 4.2); two
    sums of different terms differ by that plus the difference of the terms.
    A floor scaled to the noise of the inputs, valid on every processor, and far
    below any real mistake in the sum.
    """
    ours = numpy.asarray(backend.asnumpy(ours), dtype=numpy.float64)
    theirs = numpy.asarray(backend.asnumpy(theirs), dtype=numpy.float64)
    axes = tuple(a for a in range(ours.ndim) if a != 1) if ours.ndim > 1 else None
    terms = ours.size // ours.shape[1] if ours.ndim > 1 else ours.size
    return (numpy.abs(ours - theirs).sum(axis=axes)
            + gamma(max(terms - 1, 1), dtype) * (numpy.abs(ours) + numpy.abs(theirs)).sum(axis=axes))


class ComparisonError(AssertionError):
    """Arrays of npalexnet and PyTorch differ by more than the tolerance table allows."""


@dataclass
class Comparison:
    """The measured errors of one comparison and what each was held to.

    Attributes:
        dtype: the dtype compared (its tolerances are :func:`tolerances`).
        errors: ``{array name: relative error}``, in the order compared.
        tolerances: ``{array name: tolerance}`` (the output's or the gradients' entry of the table).
        within_sum_bound: names above their tolerance that passed by :func:`sum_bound`.
        subject: what was compared, for messages.
    """

    dtype: str
    errors: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)
    within_sum_bound: set = field(default_factory=set)
    subject: str = ""

    @property
    def failures(self) -> dict:
        """``{name: error}`` of the arrays that are out of tolerance."""
        return {name: err for name, err in self.errors.items()
                if not err <= self.tolerances[name] and name not in self.within_sum_bound}

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> tuple[str, float]:
        """``(name, error)`` of the largest error (a NaN counts as the largest)."""
        name = max(self.errors, key=lambda k: numpy.inf if numpy.isnan(self.errors[k]) else self.errors[k])
        return name, self.errors[name]

    def describe_failures(self) -> str:
        """``"name error > tolerance, ..."`` for the arrays out of tolerance (empty when it passed)."""
        return ", ".join(f"{name} {err:.2e} > {self.tolerances[name]:.0e}" for name, err in self.failures.items())

    def raise_if_failed(self) -> Comparison:
        """Raise :class:`ComparisonError` naming every array out of tolerance; return self otherwise."""
        if self.failures:
            raise ComparisonError(f"{self.subject + ': ' if self.subject else ''}errors above the {self.dtype} "
                                  f"tolerances: {self.describe_failures()}")
        return self


def compare(values: dict, gradients: dict, dtype, *, tolerance=None, sum_bounds=None,
            subject: str = "") -> Comparison:
    """Hold pairs of arrays (ours, torch's) to the table.

    Inputs:
        values: ``{name: (ours, theirs)}`` of forward results, held to the output tolerance.
        gradients: ``{name: (ours, theirs)}`` of gradients, held to the gradient tolerance.
        dtype: the dtype computed in; ``tolerance``: an ``(output, gradient)`` pair instead of the table's.
        sum_bounds: ``{name: bound}`` for gradients that are sums (bias gradients), :func:`sum_bound`:
            an array above its tolerance passes when every element is within its bound.
    Returns:
        :class:`Comparison` (it raises nothing; see :meth:`Comparison.raise_if_failed`).
    """
    tol_value, tol_grad = tolerance or tolerances(dtype)
    sum_bounds = sum_bounds or {}
    result = Comparison(numpy.dtype(dtype).name, subject=subject)
    for pairs, tol in ((values, tol_value), (gradients, tol_grad)):
        for name, (ours, theirs) in pairs.items():
            ours = backend.asnumpy(ours).astype(numpy.float64)
            theirs = backend.asnumpy(theirs).astype(numpy.float64)
            result.errors[name] = relative_error(ours, theirs)
            result.tolerances[name] = tol
            if (not result.errors[name] <= tol and name in sum_bounds
                    and numpy.all(numpy.abs(ours - theirs) <= sum_bounds[name])):
                result.within_sum_bound.add(name)
    return result


def check_against_torch(module, torch_module, x, *, xp=numpy, dtype=numpy.float64, grad_out=None,
                        targets=None, tolerance=None, seed: int = 0, check: bool = True) -> Comparison:
    """Run ``module`` and ``torch_module`` on the same input with the same weights, and compare.

    Inputs:
        module: an npalexnet Module; it is cast to ``dtype`` and moved to ``xp``'s device.
        torch_module: the same computation in torch (e.g. ``torch.nn.Conv2d(...)`` or
            :func:`~npalexnet.gradcheck.torch_twin.to_torch`); it is cast to ``dtype`` and
            gets ``module``'s weights.
        x: the input, a host array (cast to ``dtype``).
        xp: ``numpy`` or ``cupy``: where the npalexnet module runs.
        grad_out: upstream gradient of the output's shape; by default random, from a
            stream of its own (an upstream gradient related to the input would hide errors).
        targets: the second input of a loss (host integer class indices, or float class
            probabilities, cast to ``dtype``).
        tolerance: an ``(output, gradient)`` pair instead of :data:`TOLERANCES`.
        check: raise :class:`ComparisonError` on a failure (the tests); False returns it.
    Returns:
        :class:`Comparison` of ``output``, ``input`` and every parameter gradient (torch's names);
        bias gradients that exceed their tolerance pass within :func:`sum_bound`.

    Order: npalexnet's forward, torch's forward and backward, npalexnet's backward, so
    a twin's dropout replays the mask npalexnet drew. Reseed (``npalexnet.manual_seed``)
    before the call for repeatable dropout masks.
    """
    device = "cpu" if xp is numpy else "cuda"
    torch_params = dict(torch_module.named_parameters())
    ours_params = dict(module.named_parameters())
    if set(torch_params) != set(ours_params):
        raise ComparisonError(f"{type(module).__name__}: parameters {sorted(ours_params)}, "
                              f"torch has {sorted(torch_params)}")
    module.astype(dtype).to(device)
    torch_module = torch_module.to(torch_dtype(dtype))
    copy_weights(module, torch_module)
    x = numpy.asarray(backend.asnumpy(x), dtype=dtype)
    tx = to_tensor(x, requires_grad=True)
    bias_upstream, handles = _record_bias_upstream(module, torch_module)
    try:
        module.zero_grad()
        if targets is None:
            y = module(xp.asarray(x))
            ty = torch_module(tx)
        else:
            targets = numpy.asarray(backend.asnumpy(targets))
            if targets.dtype.kind == "f":   # class probabilities: a loss wants them in its input's dtype
                targets = targets.astype(dtype)
            y = module(xp.asarray(x), xp.asarray(targets))
            ty = torch_module(tx, torch.from_numpy(targets))
        if grad_out is None:
            grad_out = numpy.random.default_rng((seed, 0x5EED)).standard_normal(tuple(ty.shape)).astype(dtype)
        grad_out = numpy.asarray(backend.asnumpy(grad_out), dtype=dtype)
        ty.backward(to_tensor(grad_out))
        dx = module.backward(xp.asarray(grad_out))
    finally:
        for handle in handles:
            handle.remove()
    if y.dtype != dtype or dx.dtype != dtype:
        raise ComparisonError(f"{type(module).__name__}: output {y.dtype} and input gradient {dx.dtype}, "
                              f"expected {numpy.dtype(dtype)}")
    torch_params = dict(torch_module.named_parameters())
    gradients = {"input": (dx, tx.grad)}
    for name, p in module.named_parameters():
        if p.grad is None:
            raise ComparisonError(f"{type(module).__name__}: no gradient for {name}")
        gradients[name] = (p.grad, torch_params[name].grad)
    bounds = {name: sum_bound(pair["ours"], pair["theirs"], dtype) for name, pair in bias_upstream.items()
              if len(pair) == 2}
    result = compare({"output": (y, ty.detach())}, gradients, dtype, tolerance=tolerance, sum_bounds=bounds,
                     subject=f"{type(module).__name__} against torch {type(torch_module).__name__}")
    return result.raise_if_failed() if check else result


def _record_bias_upstream(module, torch_module):
    """Backward hooks that record, for every ``bias`` (of a convolution, linear layer or BatchNorm),
    the upstream gradient each library summed into it.

    Returns ``(seen, handles)``: after both backward passes ``seen["<prefix>.bias"]`` holds
    ``{"ours": dY, "theirs": dY'}`` as host arrays.
    """
    torch_modules = dict(torch_module.named_modules())
    seen, handles = {}, []

    def record(key, side, g):
        seen.setdefault(key, {})[side] = numpy.array(backend.asnumpy(g))

    def ours(key):
        return lambda _module, _grad_input, grad_output: record(key, "ours", grad_output)

    def theirs(key):
        # A hook on the output tensor rather than a full backward hook: torch refuses those when the
        # next layer works in place (torchvision's ReLU(inplace=True)); registered before that
        # in-place change, it receives the gradient of the value the module returned.
        def hook(_module, _inputs, output):
            output.register_hook(lambda g: record(key, "theirs", g))    # returns None: the output stays
        return hook

    for prefix, mod in module.named_modules():
        if not isinstance(getattr(mod, "bias", None), nn.Parameter) or prefix not in torch_modules:
            continue
        key = f"{prefix}.bias" if prefix else "bias"
        handles.append(mod.register_full_backward_hook(ours(key)))
        handles.append(torch_modules[prefix].register_forward_hook(theirs(key)))
    return seen, handles
