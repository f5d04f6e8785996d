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
    with pytest.raises(ValueError, match=r"Sequential.backward\(\) was called before forward"):
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


def _every_layer():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.LocalResponseNorm(3),
                         nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.5),
                         nn.Linear(16, 3))


@pytest.mark.parametrize("move", [lambda m: m.astype("float64"), lambda m: m.to("cpu")], ids=["astype", "to"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast-paths", "reference"])
def test_a_move_forgets_what_every_layer_kept_for_backward(move, fast):
    """After .astype()/.to() no layer holds arrays of the old dtype or device, and a backward without a
    new forward is the usual clear error."""
    net = _every_layer()
    x = numpy.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(numpy.float32)
    with npalexnet.config.using(fast_paths=fast):
        net(x)
        assert any(getattr(m, name) is not None for m in net.modules() for name in m.saved_for_backward)
        move(net)
        for name, m in net.named_modules():
            for attr in m.saved_for_backward:
                assert getattr(m, attr) is None, f"{name}.{attr} survived the move"
        with pytest.raises(nn.BackwardBeforeForwardError):
            net.backward(numpy.ones((2, 3)))


def test_a_layer_forgets_what_it_kept_once_its_backward_ran():
    net = _every_layer()
    x = numpy.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(numpy.float32)
    with npalexnet.config.reference():
        net.backward(numpy.ones_like(net(x)))
    assert all(getattr(m, name) is None for m in net.modules() for name in m.saved_for_backward)


def test_backward_with_a_gradient_of_the_wrong_shape_names_the_layer_and_both_shapes():
    relu = nn.ReLU()
    relu(numpy.ones((2, 3), numpy.float32))
    with pytest.raises(ValueError, match=r"ReLU\(\).backward: expected a gradient of shape \(2, 3\).*got \(3, 2\)"):
        relu.backward(numpy.ones((3, 2), numpy.float32))


def test_sequential_takes_named_stages_as_torch_does():
    from collections import OrderedDict
    net = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU())]))
    assert [n for n, _ in net.named_parameters()] == ["conv.weight", "conv.bias"]
    assert isinstance(net[1], nn.ReLU) and len(net) == 2
