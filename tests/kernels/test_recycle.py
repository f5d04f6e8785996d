"""Workspace.recycle: a returned array is reused only once nobody else holds it."""

import numpy

from npalexnet import nn
from npalexnet.kernels.workspace import Workspace

LIKE = numpy.empty(1, dtype=numpy.float32)


def test_recycled_when_unheld():
    ws = Workspace()
    first = ws.recycle("y", (4, 5), numpy.float32, LIKE)
    address = first.__array_interface__["data"][0]
    del first
    again = ws.recycle("y", (4, 5), numpy.float32, LIKE)
    assert again.__array_interface__["data"][0] == address


def test_never_overwrites_what_a_caller_keeps():
    ws = Workspace()
    kept = ws.recycle("y", (3,), numpy.float32, LIKE)
    kept[:] = 7
    other = ws.recycle("y", (3,), numpy.float32, LIKE)
    assert other is not kept
    other[:] = 1
    numpy.testing.assert_array_equal(kept, 7)


def test_a_view_counts_as_a_holder():
    ws = Workspace()
    view = ws.recycle("y", (6,), numpy.float32, LIKE)[2:]
    again = ws.recycle("y", (6,), numpy.float32, LIKE)
    assert again.base is None and view.base is not again


def test_shape_or_dtype_change_allocates():
    ws = Workspace()
    ws.recycle("y", (3,), numpy.float32, LIKE)
    assert ws.recycle("y", (4,), numpy.float32, LIKE).shape == (4,)
    assert ws.recycle("y", (4,), numpy.float64, LIKE).dtype == numpy.float64


def test_recycle_like_keeps_the_channel_major_layout():
    ws = Workspace()
    x = numpy.zeros((3, 2, 4, 4), dtype=numpy.float32).transpose(1, 0, 2, 3)   # (N, C, H, W) of CNHW memory
    out = ws.recycle_like("y", x)
    assert out.shape == x.shape and out.transpose(1, 0, 2, 3).flags.c_contiguous


def test_layer_outputs_kept_by_the_user_survive_later_steps():
    """The user keeps every step's output and input gradient; later steps must not change them."""
    rng = numpy.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.LocalResponseNorm(3), nn.Conv2d(4, 3, 5, padding=2)).astype("float64")
    inputs = [rng.standard_normal((2, 2, 8, 8)) for _ in range(3)]
    grads = [rng.standard_normal((2, 3, 4, 4)) for _ in range(3)]
    kept = []
    for x, g in zip(inputs, grads):
        y = model(x)
        dx = model.backward(g)
        kept.append((y, dx, y.copy(), dx.copy()))
    for y, dx, y_copy, dx_copy in kept:
        numpy.testing.assert_array_equal(y, y_copy)
        numpy.testing.assert_array_equal(dx, dx_copy)
    # running the last input again reproduces its output: no stale buffer leaked into a result
    numpy.testing.assert_array_equal(model(inputs[-1]), kept[-1][2])
