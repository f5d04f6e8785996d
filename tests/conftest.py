"""Shared fixtures: the backend parametrization and the torch-comparison helper."""

from __future__ import annotations

import json
import os

import numpy
import pytest

import npalexnet
from npalexnet import backend, nn

#: Tolerances per dtype, on the scale-free error max|a-b| / max(|a|+|b|):
#: (forward output, gradients). They are multiples of the unit roundoff u (float32 2^-24 = 6.0e-8,
#: float64 2^-53 = 1.1e-16), not measurements: float64 1e-10 is ~1e6 u; float32 1e-5 is ~170 u for
#: outputs and 5e-5 ~840 u for gradients, room for the rounding of each layer's products and sums
#: (whose errors grow like sqrt(n) u for the random inputs of the tests, and whose worst case
#: gamma_n = n u the order of summation and FMA use may approach), times the amplification of
#: Winograd's transforms (F(3x3, 5x5), the largest tile a default uses, costs about 10x im2col's
#: error). Sums whose terms cancel (a bias before BatchNorm) are held to the bound of
#: :func:`_capture_bias_upstream` instead, which no relative tolerance can give.
TOLERANCES = {
    numpy.float64: (1e-10, 1e-10),
    numpy.float32: (1e-5, 5e-5),
}

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
]


def pytest_collection_modifyitems(config, items):
    if backend.cupy_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and an NVIDIA GPU (none found); "
                                   "run on a GPU machine with `pip install -e .[gpu]`")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test: numpy, or cupy where a GPU exists."""
    if request.param == "numpy":
        return numpy
    import cupy
    return cupy


@pytest.fixture(autouse=True)
def _seeded():
    npalexnet.manual_seed(0)
    yield


def device_of(xp) -> str:
    return "cpu" if xp is numpy else "cuda"


def rel_error(a, b) -> float:
    """max|a - b| / max(|a| + |b|): the error every comparison in the suite uses."""
    from npalexnet.gradcheck import relative_error
    return relative_error(a, b)


def copy_weights_to_torch(module, torch_module):
    """Load an npalexnet module's state into the torch module of the same architecture."""
    import torch
    state = {k: torch.from_numpy(numpy.array(npalexnet.asnumpy(v))) for k, v in module.state_dict().items()}
    torch_module.load_state_dict(state)


def _record(torch_module, dtype, errors):
    """With NPALEXNET_RECORD_ERRORS=FILE, append the measured errors (for the tolerance report)."""
    path = os.environ.get("NPALEXNET_RECORD_ERRORS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"module": type(torch_module).__name__, "dtype": numpy.dtype(dtype).name,
                                "errors": errors}) + "\n")


def check_against_torch(module, torch_module, x, *, xp=numpy, dtype=numpy.float64,
                        grad_out=None, forward_kwargs=None, tolerance=None, seed=0):
    """Run ``module`` and ``torch_module`` on the same input with the same weights.

    Compares the output, the input gradient and every parameter gradient for
    a random upstream gradient (never ``.sum()``). The torch module gets the
    npalexnet module's weights. Returns the dict of measured errors.
    """
    import torch

    module.astype(dtype).to(device_of(xp))
    torch_module = torch_module.to(torch.float64 if dtype == numpy.float64 else torch.float32)
    copy_weights_to_torch(module, torch_module)
    x = numpy.asarray(x, dtype=dtype)
    tx = torch.tensor(x, requires_grad=True)
    bias_bounds, handles = _capture_bias_upstream(module, torch_module)
    ty = torch_module(tx)
    if grad_out is None:
        # A stream of its own: an upstream gradient equal to (a function of) the input would hide errors.
        grad_out = numpy.random.default_rng((seed, 0x5EED)).standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.tensor(grad_out))

    module.zero_grad()
    y = module(xp.asarray(x))
    dx = module.backward(xp.asarray(grad_out))
    for handle in handles:
        handle.remove()
    upstream = bias_bounds(dtype)
    assert y.dtype == dtype, f"output dtype {y.dtype}, expected {numpy.dtype(dtype)}"
    assert dx.dtype == dtype, f"input-gradient dtype {dx.dtype}, expected {numpy.dtype(dtype)}"
    tol_value, tol_grad = tolerance or TOLERANCES[dtype]
    pairs = {"output": (y, ty.detach().numpy()), "input": (dx, tx.grad.numpy())}
    torch_params = dict(torch_module.named_parameters())
    assert set(torch_params) == {n for n, _ in module.named_parameters()}
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        pairs[name] = (p.grad, torch_params[name].grad.numpy())
    errors, failures = {}, {}
    for name, (ours, theirs) in pairs.items():
        ours = npalexnet.asnumpy(ours)
        errors[name] = rel_error(ours, theirs)
        if errors[name] <= (tol_value if name == "output" else tol_grad):
            continue
        if name in upstream and numpy.all(numpy.abs(ours - theirs) <= upstream[name]):
            continue   # a sum of gradients that cancel: within what the arithmetic guarantees
        failures[name] = errors[name]
    _record(torch_module, dtype, errors)
    assert not failures, f"errors above tolerance ({tol_value}, {tol_grad}): {failures}"
    return errors


def _capture_bias_upstream(module, torch_module):
    """Backward hooks that record, for every ``bias`` (of a convolution, linear layer or BatchNorm),
    how far two correct float computations of its gradient can be apart.

    A bias gradient is the sum of the upstream gradient over every axis but the channel axis:
    db_c = sum_i dY[i, c]. Its relative error means nothing when the terms cancel: before a
    BatchNorm the exact sum is zero, and each library returns rounding noise (relative error ~1).
    What the arithmetic guarantees instead, for any summation order, with or without FMA (Higham
    2002, Section 4.2): two sums differ by at most the difference of what they summed plus each
    sum's rounding,

        |db_c - db'_c| <= sum_i |dY_i - dY'_i| + gamma_{n-1} sum_i (|dY_i| + |dY'_i|),

    with dY ours and dY' torch's upstream gradient. A floor scaled to the noise of the inputs,
    valid on every processor, and far below any real mistake in the sum.
    Returns ``(bounds, handles)``; ``bounds[name]`` is filled once both backward passes ran.
    """
    from npalexnet.gradcheck import gamma
    torch_modules = dict(torch_module.named_modules())
    upstream, handles = {}, []

    def recorder(key, side):
        def hook(_module, _grad_input, grad_output):
            g = grad_output[0] if isinstance(grad_output, tuple) else grad_output
            upstream.setdefault(key, {})[side] = numpy.array(npalexnet.asnumpy(g.detach() if side else g),
                                                             dtype=numpy.float64)
        return hook

    for prefix, mod in module.named_modules():
        if not isinstance(getattr(mod, "bias", None), nn.Parameter) or prefix not in torch_modules:
            continue
        key = f"{prefix}.bias" if prefix else "bias"
        handles.append(mod.register_full_backward_hook(recorder(key, 0)))
        handles.append(torch_modules[prefix].register_full_backward_hook(recorder(key, 1)))

    def bounds(dtype):
        result = {}
        for key, pair in upstream.items():
            ours, theirs = pair[0], pair[1]
            axes = tuple(a for a in range(ours.ndim) if a != 1) if ours.ndim > 1 else None
            terms = ours.size // ours.shape[1] if ours.ndim > 1 else 1
            result[key] = (numpy.abs(ours - theirs).sum(axis=axes)
                           + gamma(max(terms - 1, 1), dtype) * (numpy.abs(ours) + numpy.abs(theirs)).sum(axis=axes))
        return result

    return bounds, handles
