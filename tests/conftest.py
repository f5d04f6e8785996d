"""Shared fixtures: the backend parametrization, seeding, and (on request) recording the measured errors.

The torch-comparison helper and its tolerance table live in the package,
:mod:`npalexnet.gradcheck.torch_compare` (``check_against_torch``,
``TOLERANCES``), where the gradient-check report and the examples use them too.
"""

from __future__ import annotations

import json
import os

import numpy
import pytest

import npalexnet
from npalexnet import backend

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


@pytest.fixture(autouse=True)
def _record_errors(request):
    """With NPALEXNET_RECORD_ERRORS=FILE, append every torch comparison's measured errors to FILE
    (one JSON line each: what was compared, the dtype, the errors), to see the tolerances' margins."""
    path = os.environ.get("NPALEXNET_RECORD_ERRORS")
    if not path:
        yield
        return
    from npalexnet.gradcheck import torch_compare
    monkeypatch = request.getfixturevalue("monkeypatch")
    compare = torch_compare.compare

    def recording(*args, **kwargs):
        result = compare(*args, **kwargs)
        with open(path, "a") as f:
            f.write(json.dumps({"test": request.node.nodeid, "subject": result.subject, "dtype": result.dtype,
                                "errors": result.errors}) + "\n")
        return result

    monkeypatch.setattr(torch_compare, "compare", recording)
    yield
