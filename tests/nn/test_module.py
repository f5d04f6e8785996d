"""Module mechanics: registration, names, state_dict, loading, dtype/device moves, hooks."""


import numpy
import pytest
import torch

import npalexnet
import npalexnet.optim
from npalexnet import nn


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 2))


def torch_twin():
    T = torch.nn
    return T.Sequential(T.Conv2d(3, 4, 3), T.BatchNorm2d(4), T.ReLU(), T.Flatten(), T.Linear(36, 2))


def test_names_and_state_dict_keys_match_torch():
    net, twin = small_net(), torch_twin()
    assert [n for n, _ in net.named_parameters()] == [n for n, _ in twin.named_parameters()]
    assert list(net.state_dict()) == list(twin.state_dict())
    assert len(net) == 5 and isinstance(net[0], nn.Conv2d) and isinstance(net[-1], nn.Linear)
    assert len(net[1:3]) == 2


def test_load_torch_state_dict_gives_identical_outputs():
    net, twin = small_net().eval(), torch_twin().eval()
    net.load_state_dict(twin.state_dict())
    x = numpy.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(numpy.float32)
    numpy.testing.assert_allclose(net(x), twin(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_load_state_dict_copies_and_casts():
    net = small_net()
    state = {k: numpy.array(v, dtype=numpy.float64 if v.dtype.kind == "f" else v.dtype)
             for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert net[0].weight.dtype == numpy.float32
    state["0.weight"][...] = 7.0
    assert not (net[0].weight.data == 7.0).any(), "the module must not alias the caller's arrays"


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("0.bias"), r"missing keys \['0.bias'\]"),
    (lambda s: s.__setitem__("extra.weight", numpy.zeros(1)), r"unexpected keys \['extra.weight'\]"),
    (lambda s: s.__setitem__("4.weight", numpy.zeros((2, 35))), r"4.weight has shape \(2, 35\), expected \(2, 36\)"),
])
def test_bad_state_dict_is_rejected_and_changes_nothing(mutate, message):
    net = small_net()
    before = {k: numpy.array(v) for k, v in net.state_dict().items()}
    state = {k: numpy.zeros_like(v) for k, v in net.state_dict().items()}
    mutate(state)
    with pytest.raises(ValueError, match=message):
        net.load_state_dict(state)
    for k, v in net.state_dict().items():
        numpy.testing.assert_array_equal(v, before[k])


def test_astype_casts_floats_only_and_to_cpu_is_a_no_op():
    net = small_net().astype("float64")
    assert all(p.dtype == numpy.float64 for p in net.parameters())
    assert net[1].num_batches_tracked.dtype == numpy.int64
    assert net.to("cpu") is net and net.device == "cpu"
    with pytest.raises(TypeError, match="floating dtype"):
        net.astype("int32")


def test_train_eval_propagate_and_zero_grad():
    net = small_net()
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    x = numpy.ones((2, 3, 5, 5), dtype=numpy.float32)
    net.backward(numpy.ones_like(net(x)))
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not p.grad.any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_hooks_see_every_layer_in_order_and_can_be_removed():
    net = small_net()
    seen_forward, seen_backward = [], []
    handles = []
    for name, m in net.named_children():
        handles.append(m.register_forward_hook(lambda mod, i, o, name=name: seen_forward.append((name, o.shape))))
        handles.append(m.register_full_backward_hook(
            lambda mod, gi, go, name=name: seen_backward.append((name, gi.shape, go.shape))))
    x = numpy.ones((2, 3, 5, 5), dtype=numpy.float32)
    net.backward(numpy.ones((2, 2), dtype=numpy.float32) + net(x) * 0)
    assert [n for n, _ in seen_forward] == ["0", "1", "2", "3", "4"]
    assert [n for n, *_ in seen_backward] == ["4", "3", "2", "1", "0"]
    assert seen_backward[0][1:] == ((2, 36), (2, 2))
    for h in handles:
        h.remove()
    net(x)
    assert len(seen_forward) == 5


def test_backward_before_forward_names_the_layer():
    with pytest.raises(ValueError, match=r"Linear.backward\(\) was called before forward"):
        small_net().backward(numpy.ones((2, 2), dtype=numpy.float32))
    with pytest.raises(RuntimeError):
        nn.ReLU().backward(numpy.ones(2))


def test_backward_twice_for_one_forward_is_an_error():
    relu = nn.ReLU()
    relu(numpy.ones(3))
    relu.backward(numpy.ones(3))
    with pytest.raises(nn.BackwardBeforeForwardError, match="twice"):
        relu.backward(numpy.ones(3))


def test_module_subclass_must_call_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(numpy.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="position 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_cuda_move_without_gpu_raises_clear_error():
    if npalexnet.cupy_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="pip install"):
        small_net().to("cuda")


def test_repr_lists_children():
    text = repr(small_net())
    assert "(0): Conv2d(3, 4, kernel_size=(3, 3)" in text and "(4): Linear(" in text


# ---------------------------------------------------------------------------- gradient storage recycling
# Parameter.accumulate_matmul writes the first product of a step into a pooled array: the one
# zero_grad released, when nothing else refers to it. The test looks at the memory address.


def address(a):
    return a.__array_interface__["data"][0]

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
def test_released_gradient_storage_is_recycled(algorithm, how):
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
def test_a_gradient_the_user_kept_is_never_overwritten(algorithm, how):
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
def test_a_view_of_the_old_gradient_also_prevents_reuse(view):
    conv, x1, x2, g = conv_and_data("winograd")
    conv_step(conv, x1, g)
    kept = view(conv.weight.grad)     # only the view: the base array is referenced through it
    saved = kept.copy()
    conv.zero_grad()
    conv_step(conv, x2, g)
    numpy.testing.assert_array_equal(kept, saved)
    assert not numpy.shares_memory(conv.weight.grad, kept)


def test_a_gradient_that_is_a_view_of_other_memory_is_not_recycled():
    # A data-parallel all-reduce points .grad at a slice of its flat buffer: once released, that slice
    # may be held by nobody else, yet writing the next gradient into it would clobber the buffer.
    p = nn.Parameter(numpy.zeros((2, 3)))
    flat = numpy.arange(10.0)
    p.grad = flat[2:8].reshape(2, 3)
    p.grad = None
    a, b = numpy.ones((2, 4)), numpy.full((4, 3), 0.5)
    p.accumulate_matmul(a, b)
    numpy.testing.assert_array_equal(flat, numpy.arange(10.0))
    numpy.testing.assert_array_equal(p.grad, numpy.full((2, 3), 2.0))


def test_a_spare_of_another_dtype_is_not_recycled():
    conv, x1, _, g = conv_and_data("winograd")
    conv_step(conv, x1, g)
    conv.zero_grad()
    conv.astype("float32")
    conv_step(conv, x1.astype(numpy.float32), g.astype(numpy.float32))
    assert conv.weight.grad.dtype == numpy.float32


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
@pytest.mark.parametrize("recycled", [False, True], ids=["first-step", "after-zero-grad"])
def test_conv_gradients_accumulate_without_zero_grad(algorithm, recycled):
    conv, x1, x2, g = conv_and_data(algorithm)
    if recycled:   # the first product lands in recycled storage, the second is added to it
        conv_step(conv, x2, g)
        conv.zero_grad()
    conv_step(conv, x1, g)
    once_w, once_b = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv_step(conv, x1, g)
    numpy.testing.assert_allclose(conv.weight.grad, 2 * once_w, rtol=1e-13)
    numpy.testing.assert_allclose(conv.bias.grad, 2 * once_b, rtol=1e-13)


def test_zero_grad_keeping_arrays_still_gives_the_new_gradient():
    conv, x1, x2, g = conv_and_data("winograd")
    conv_step(conv, x1, g)
    grad = conv.weight.grad
    conv.zero_grad(set_to_none=False)
    conv_step(conv, x2, g)
    assert conv.weight.grad is grad
    numpy.testing.assert_allclose(grad, fresh_weight_grad(conv, x2, g), rtol=1e-13, atol=1e-15)


def test_linear_gradients_accumulate_without_zero_grad():
    lin = nn.Linear(4, 3).astype("float64")
    rng = numpy.random.default_rng(0)
    x, g = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    lin(x)
    lin.backward(g)
    once_w, once_b = lin.weight.grad.copy(), lin.bias.grad.copy()
    lin(x)
    lin.backward(g)
    numpy.testing.assert_allclose(lin.weight.grad, 2 * once_w, rtol=1e-14)
    numpy.testing.assert_allclose(lin.bias.grad, 2 * once_b, rtol=1e-14)
    numpy.testing.assert_allclose(once_w, g.T @ x, rtol=1e-14)


def test_accumulate_matmul_reshapes_recycles_and_adds():
    p = nn.Parameter(numpy.zeros((2, 3, 1, 2)))
    rng = numpy.random.default_rng(0)
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 2))   # (6, 2): the parameter's size
    p.accumulate_matmul(a, b)
    numpy.testing.assert_allclose(p.grad, (a @ b).reshape(2, 3, 1, 2), rtol=1e-14)
    where = address(p.grad)
    p.grad = None
    p.accumulate_matmul(2 * a, b)
    assert address(p.grad) == where
    numpy.testing.assert_allclose(p.grad, (2 * a @ b).reshape(2, 3, 1, 2), rtol=1e-14)
    # Batched operands (one product per group) and a second contribution of the same step.
    ga, gb = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 2))
    p.accumulate_matmul(ga, gb)
    numpy.testing.assert_allclose(p.grad, (2 * a @ b + (ga @ gb).reshape(6, 2)).reshape(2, 3, 1, 2), rtol=1e-14)


@pytest.mark.parametrize("a_shape, b_shape", [((6, 5), (5, 3)), ((2, 5), (5, 2)), ((2, 3, 4), (2, 4, 1))], ids=str)
def test_accumulate_matmul_rejects_a_product_of_the_wrong_size(a_shape, b_shape):
    p = nn.Parameter(numpy.zeros((2, 3, 1, 2)))
    with pytest.raises(ValueError, match=r"gradient of shape .* for a parameter of shape \(2, 3, 1, 2\)"):
        p.accumulate_matmul(numpy.ones(a_shape), numpy.ones(b_shape))
    assert p.grad is None
