"""Shared fixtures: the backend parametrization and the torch-comparison helper."""

from __future__ import annotations

import json
import os

import numpy
import pytest

import npalexnet
from npalexnet import backend

#: Tolerances per dtype, on the scale-free error max|a-b| / max(|a|+|b|):
#: (forward output, gradients). float64 agrees to rounding; float32 sums in a
#: different order than torch's kernels, and gradients sum over more terms.
TOLERANCES = {
    numpy.float64: (1e-10, 1e-10),
    numpy.float32: (1e-5, 5e-5),
}

#: Absolute differences below these are rounding noise whatever the relative
#: error says: a gradient that is exactly zero in exact arithmetic (a conv bias
#: followed by BatchNorm) is +-1e-17 in both libraries, relative error ~1.
ABSOLUTE_FLOOR = {numpy.float64: 1e-12, numpy.float32: 1e-6}

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
    ty = torch_module(tx)
    if grad_out is None:
        # A stream of its own: an upstream gradient equal to (a function of) the input would hide errors.
        grad_out = numpy.random.default_rng((seed, 0x5EED)).standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.tensor(grad_out))

    module.zero_grad()
    y = module(xp.asarray(x))
    dx = module.backward(xp.asarray(grad_out))
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
        above_floor = ours.size and numpy.max(numpy.abs(ours - theirs)) > ABSOLUTE_FLOOR[dtype]
        if errors[name] > (tol_value if name == "output" else tol_grad) and above_floor:
            failures[name] = errors[name]
    _record(torch_module, dtype, errors)
    assert not failures, f"errors above tolerance ({tol_value}, {tol_grad}): {failures}"
    return errors
