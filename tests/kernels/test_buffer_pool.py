"""The shared buffer pool: a pooled array is handed out again only once nobody else holds it."""

import numpy

from npalexnet import nn
from npalexnet.kernels.workspace import BufferPool

LIKE = numpy.empty(1, dtype=numpy.float32)


def address(a):
    return a.__array_interface__["data"][0]


def test_reused_when_unheld_and_reshaped_to_any_shape_of_the_size():
    pool = BufferPool()
    first = pool.take((4, 5), numpy.float32, LIKE)
    where = address(first)
    del first
    again = pool.take((2, 10), numpy.float32, LIKE)
    assert address(again) == where and again.shape == (2, 10) and again.flags.c_contiguous


def test_never_hands_out_what_a_caller_keeps():
    pool = BufferPool()
    kept = pool.take((3,), numpy.float32, LIKE)
    kept[:] = 7
    other = pool.take((3,), numpy.float32, LIKE)
    assert address(other) != address(kept)
    other[:] = 1
    numpy.testing.assert_array_equal(kept, 7)


def test_a_view_or_a_container_counts_as_a_holder():
    pool = BufferPool()
    view = pool.take((6,), numpy.float32, LIKE)[2:]
    held = [pool.take((6,), numpy.float32, LIKE)]
    third = pool.take((6,), numpy.float32, LIKE)
    assert len({address(view) - 8, address(held[0]), address(third)}) == 3


def test_dtype_and_size_select_the_arrays():
    pool = BufferPool()
    a = pool.take((3,), numpy.float32, LIKE)
    where = address(a)
    del a
    assert pool.take((4,), numpy.float32, LIKE).shape == (4,)
    b = pool.take((3,), numpy.float64, LIKE)
    assert b.dtype == numpy.float64 and address(b) != where


def test_sizes_unused_for_a_while_are_released():
    pool = BufferPool(max_idle=10)
    pool.take((1000,), numpy.float32, LIKE)
    kept = pool.take((2000,), numpy.float32, LIKE)
    for _ in range(300):   # other sizes only
        pool.take((5,), numpy.float32, LIKE)
    assert pool.nbytes() == 5 * 4 + kept.nbytes   # the idle 1000 went; the one in use is still tracked
    del kept
    for _ in range(300):
        pool.take((5,), numpy.float32, LIKE)
    assert pool.nbytes() == 5 * 4


def test_empty_like_keeps_the_channel_major_layout():
    from npalexnet.kernels import workspace
    x = numpy.zeros((3, 2, 4, 4), dtype=numpy.float32).transpose(1, 0, 2, 3)   # (N, C, H, W) of CNHW memory
    out = workspace.empty_like(x)
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
