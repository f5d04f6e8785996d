"""The buffer pool behind the fast paths: a pooled array is handed out again only once nobody else holds it."""

import numpy
import pytest

import npalexnet.optim
from npalexnet import config, nn
from npalexnet.kernels import memory
from npalexnet.kernels.memory import BufferPool

LIKE = numpy.empty(1, dtype=numpy.float32)


def address(a):
    return a.__array_interface__["data"][0]


@pytest.fixture
def pooled():
    """The fast paths allocate from the pool (as in training), from an empty pool."""
    memory.POOL.clear()
    with config.using(buffer_pool=True):
        yield
    memory.POOL.clear()


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


def test_the_pool_is_used_only_when_the_setting_is_on():
    memory.POOL.clear()
    a = memory.empty((100,), numpy.float32, LIKE)
    del a
    assert memory.POOL.nbytes() == 0                     # off by default: plain allocation
    with config.using(buffer_pool=True):
        b = memory.empty((100,), numpy.float32, LIKE)
        where = address(b)
        del b
        assert address(memory.empty((10, 10), numpy.float32, LIKE)) == where
    memory.POOL.clear()


def test_empty_like_keeps_the_channel_major_layout():
    x = numpy.zeros((3, 2, 4, 4), dtype=numpy.float32).transpose(1, 0, 2, 3)   # (N, C, H, W) of CNHW memory
    out = memory.empty_like(x)
    assert out.shape == x.shape and out.transpose(1, 0, 2, 3).flags.c_contiguous


def _model():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.LocalResponseNorm(3), nn.Conv2d(4, 3, 5, padding=2), nn.Flatten(),
                         nn.Linear(48, 5), nn.ReLU())


@pytest.mark.parametrize("xp", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_results_kept_by_the_user_survive_later_steps(xp, pooled):
    """The user keeps every step's output, input gradient and parameter gradients; later steps must not
    change them, and rerunning the last input reproduces its output (no stale buffer leaked in)."""
    import importlib
    xp = importlib.import_module(xp)
    model = _model().astype("float64").to("cpu" if xp is numpy else "cuda")
    rng = numpy.random.default_rng(0)
    kept = []
    for _ in range(3):
        x = xp.asarray(rng.standard_normal((2, 2, 8, 8)))
        model.zero_grad()
        y = model(x)
        dx = model.backward(xp.asarray(rng.standard_normal((2, 5))))
        grads = [p.grad for p in model.parameters()]
        kept.append((x, [y, dx, *grads], [a.copy() for a in (y, dx, *grads)]))
    for _, arrays, copies in kept:
        for a, c in zip(arrays, copies):
            assert bool((a == c).all())
    assert bool((model(kept[-1][0]) == kept[-1][2][0]).all())


def conv_step(conv, x, g):
    conv(x)
    conv.backward(g)


def fresh_weight_grad(conv, x, g):
    twin = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                     algorithm=conv.algorithm).astype(conv.weight.dtype)
    twin.load_state_dict(conv.state_dict())
    conv_step(twin, x, g)
    return twin.weight.grad


def conv_and_data(algorithm):
    conv = nn.Conv2d(2, 3, 3, padding=1, algorithm=algorithm).astype("float64")
    rng = numpy.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    return conv, x1, x2, rng.standard_normal((2, 3, 5, 5))


def zero_grad_by(conv, how):
    if how == "optimizer":
        npalexnet.optim.SGD(conv.parameters(), lr=0.1).zero_grad()
    else:
        conv.zero_grad()


@pytest.mark.parametrize("how", ["module", "optimizer"])
@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_released_gradient_storage_is_recycled(algorithm, how, pooled):
    conv, x1, x2, g = conv_and_data(algorithm)
    conv_step(conv, x1, g)
    where = address(conv.weight.grad)
    zero_grad_by(conv, how)
    assert conv.weight.grad is None
    conv_step(conv, x2, g)
    assert address(conv.weight.grad) == where, "the released memory should receive the next gradient"
    # Overwritten, not added to: the step-1 values are gone.
    numpy.testing.assert_allclose(conv.weight.grad, fresh_weight_grad(conv, x2, g), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("how", ["module", "optimizer"])
@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_a_gradient_the_user_kept_is_never_overwritten(algorithm, how, pooled):
    conv, x1, x2, g = conv_and_data(algorithm)
    conv_step(conv, x1, g)
    old = conv.weight.grad
    saved = old.copy()
    zero_grad_by(conv, how)
    conv_step(conv, x2, g)
    assert conv.weight.grad is not old and not numpy.shares_memory(conv.weight.grad, old)
    numpy.testing.assert_array_equal(old, saved)
    numpy.testing.assert_allclose(conv.weight.grad, fresh_weight_grad(conv, x2, g), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("view", [lambda a: a[0], lambda a: a.reshape(-1), lambda a: a.transpose(1, 0, 2, 3)[::2]],
                         ids=["row", "flat", "strided"])
def test_a_view_of_the_old_gradient_also_prevents_reuse(view, pooled):
    conv, x1, x2, g = conv_and_data("winograd")
    conv_step(conv, x1, g)
    kept = view(conv.weight.grad)     # only the view: the base array is referenced through it
    saved = kept.copy()
    conv.zero_grad()
    conv_step(conv, x2, g)
    numpy.testing.assert_array_equal(kept, saved)
    assert not numpy.shares_memory(conv.weight.grad, kept)


def test_an_array_of_another_dtype_is_not_recycled(pooled):
    conv, x1, _, g = conv_and_data("winograd")
    conv_step(conv, x1, g)
    conv.zero_grad()
    conv.astype("float32")
    conv_step(conv, x1.astype(numpy.float32), g.astype(numpy.float32))
    assert conv.weight.grad.dtype == numpy.float32


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
@pytest.mark.parametrize("recycled", [False, True], ids=["first-step", "after-zero-grad"])
def test_conv_gradients_accumulate_without_zero_grad(algorithm, recycled, pooled):
    conv, x1, x2, g = conv_and_data(algorithm)
    if recycled:   # the first product lands in recycled storage, the second is added to it
        conv_step(conv, x2, g)
        conv.zero_grad()
    conv_step(conv, x1, g)
    once_w, once_b = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv_step(conv, x1, g)
    numpy.testing.assert_allclose(conv.weight.grad, 2 * once_w, rtol=1e-13)
    numpy.testing.assert_allclose(conv.bias.grad, 2 * once_b, rtol=1e-13)


def test_zero_grad_keeping_arrays_still_gives_the_new_gradient(pooled):
    conv, x1, x2, g = conv_and_data("winograd")
    conv_step(conv, x1, g)
    grad = conv.weight.grad
    conv.zero_grad(set_to_none=False)
    conv_step(conv, x2, g)
    assert conv.weight.grad is grad
    numpy.testing.assert_allclose(grad, fresh_weight_grad(conv, x2, g), rtol=1e-13, atol=1e-15)
