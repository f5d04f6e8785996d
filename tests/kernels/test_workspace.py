"""Workspace: a layer's scratch buffers, reused while shape, dtype and device stay the same."""

import numpy
import pytest

from npalexnet import nn
from npalexnet.kernels import numba_kernels
from npalexnet.kernels.workspace import Workspace

LIKE = numpy.zeros(1, dtype=numpy.float32)


def test_same_name_shape_and_dtype_give_the_same_buffer():
    ws = Workspace()
    a = ws.get("col", (4, 6), numpy.float32, LIKE)
    assert a.shape == (4, 6) and a.dtype == numpy.float32 and a.flags.c_contiguous
    assert type(a) is numpy.ndarray
    # The shape may come as a list or with NumPy integers: it is the same request.
    assert ws.get("col", [4, 6], numpy.float32, LIKE) is a
    assert ws.get("col", (numpy.int64(4), numpy.int32(6)), numpy.dtype("float32"), LIKE) is a
    assert ws.nbytes() == a.nbytes


@pytest.mark.parametrize("change", [
    {"shape": (6, 4)},                  # same size, other shape
    {"shape": (4, 7)},
    {"dtype": numpy.float64},
    {"name": "other"},                  # another name is another buffer, the first one kept
], ids=str)
def test_a_change_gives_a_new_buffer(change):
    ws = Workspace()
    request = {"name": "col", "shape": (4, 6), "dtype": numpy.float32}
    a = ws.get(request["name"], request["shape"], request["dtype"], LIKE)
    request.update(change)
    b = ws.get(request["name"], request["shape"], request["dtype"], LIKE)
    assert b is not a and not numpy.shares_memory(a, b)
    assert b.shape == tuple(request["shape"]) and b.dtype == request["dtype"] and b.flags.c_contiguous
    # The latest request is what the name now holds.
    assert ws.get(request["name"], request["shape"], request["dtype"], LIKE) is b
    if "name" in change:
        assert ws.get("col", (4, 6), numpy.float32, LIKE) is a
        assert ws.nbytes() == a.nbytes + b.nbytes
    else:
        assert ws.nbytes() == b.nbytes


def test_clear_drops_every_buffer():
    ws = Workspace()
    a = ws.get("a", (3,), numpy.float64, LIKE)
    ws.get("b", (2, 2), numpy.float32, LIKE)
    assert ws.nbytes() == 3 * 8 + 4 * 4
    ws.clear()
    assert ws.nbytes() == 0
    assert ws.get("a", (3,), numpy.float64, LIKE) is not a


@pytest.mark.gpu
def test_a_device_change_gives_a_new_buffer():
    import cupy
    ws = Workspace()
    host = ws.get("col", (4, 6), numpy.float32, LIKE)
    device = ws.get("col", (4, 6), numpy.float32, cupy.zeros(1, dtype=numpy.float32))
    assert type(device) is cupy.ndarray
    assert type(ws.get("col", (4, 6), numpy.float32, LIKE)) is numpy.ndarray is type(host)


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
def test_conv2d_after_astype_drops_its_workspace_and_cache(algorithm):
    conv = nn.Conv2d(2, 3, 3, padding=1, algorithm=algorithm)
    x = numpy.random.default_rng(0).standard_normal((2, 2, 5, 5))
    conv(x.astype(numpy.float32))
    assert conv._workspace.nbytes() > 0
    conv.astype("float64")
    # _on_apply: no float32 buffers kept alive, and no forward of the old dtype to backward through.
    assert conv._workspace.nbytes() == 0
    with pytest.raises(nn.BackwardBeforeForwardError):
        conv.backward(numpy.ones((2, 3, 5, 5)))
    ref = nn.Conv2d(2, 3, 3, padding=1, algorithm="im2col").astype("float64")
    ref.load_state_dict(conv.state_dict())
    y = conv(x)
    dx = conv.backward(numpy.ones_like(y))
    assert y.dtype == dx.dtype == conv.weight.grad.dtype == numpy.float64
    numpy.testing.assert_allclose(y, ref(x), rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(dx, ref.backward(numpy.ones_like(y)), rtol=1e-12, atol=1e-14)
    assert all(buf.dtype == numpy.float64 for buf in conv._workspace._arrays.values())


def test_lrn_keeps_only_its_input_and_forgets_it_after_astype():
    lrn = nn.LocalResponseNorm(3, alpha=0.1)
    # (N, C, H, W) view of (C, N, H, W) memory: the layout the numba LRN kernels take.
    x = numpy.ascontiguousarray(numpy.random.default_rng(0).standard_normal((2, 3, 4, 4)).transpose(1, 0, 2, 3))
    x = x.astype(numpy.float32).transpose(1, 0, 2, 3)
    lrn(x)
    if numba_kernels.lrn_applies(x):
        # Backward recomputes the scales from x: nothing of x's size is kept besides x itself.
        kept, scale, scale_pow = lrn._cache
        assert kept is x and scale is None and scale_pow is None
    lrn.astype("float64")
    with pytest.raises(nn.BackwardBeforeForwardError):
        lrn.backward(numpy.ones(x.shape))
