"""Forward and backward hooks see what torch's hooks see, on every layer type and on the model."""

import numpy

from npalexnet import nn
from npalexnet.gradcheck.torch_twin import to_tensor, to_torch
from npalexnet.models import alexnet


def small_net():
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=1), nn.ReLU(),
                         nn.LocalResponseNorm(3, alpha=0.1, k=2.0), nn.MaxPool2d(3, 2), nn.BatchNorm2d(6),
                         nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Dropout(0.5), nn.Linear(24, 4))


def record(module, store, torch_side):
    for name, m in module.named_modules():
        def fwd(mod, inp, out, name=name):
            if torch_side:
                inp = inp[0]
            store.setdefault(name, {}).update(input=inp, output=out)

        def bwd(mod, gin, gout, name=name):
            if torch_side:
                gin, gout = gin[0], gout[0]
            store.setdefault(name, {}).update(grad_input=gin, grad_output=gout)
        m.register_forward_hook(fwd)
        m.register_full_backward_hook(bwd)


def test_hooks_see_the_same_arrays_as_torch_hooks():
    net = small_net().astype("float64")
    twin = to_torch(net)                  # dropout replays our mask
    ours, theirs = {}, {}
    record(net, ours, False)
    record(twin, theirs, True)
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((3, 3, 11, 11))
    g = rng.standard_normal((3, 4))
    net(x)
    tx = to_tensor(x, requires_grad=True)
    twin(tx).backward(to_tensor(g))
    net.backward(g)
    assert set(ours) == set(theirs)       # every module, the container ("") included
    for name in ours:
        for key in ("input", "output", "grad_input", "grad_output"):
            a, b = ours[name][key], theirs[name][key].detach().numpy()
            assert a.shape == b.shape, (name, key)
            numpy.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"{name} {key}")


def test_model_hooks_fire_on_a_direct_backward_and_on_alexnet_stages():
    model = alexnet("cifar", width=0.0625)
    fired = []
    model.register_full_backward_hook(lambda m, gi, go: fired.append(("model", gi.shape, go.shape)))
    model.features.register_full_backward_hook(lambda m, gi, go: fired.append(("features", gi.shape, go.shape)))
    x = numpy.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(numpy.float32)
    out = model(x)
    model.backward(numpy.ones_like(out))
    assert fired == [("features", (2, 3, 32, 32), (2, 16, 2, 2)), ("model", (2, 3, 32, 32), (2, 10))]


def test_a_subclass_that_changes_the_math_runs_its_own_code_and_hooks_fire_once():
    """A layer's fast paths compute the math of the class that declared the seam: a subclass that
    overrides forward or backprop runs its own code, never a fast path of its parent's."""
    class Scaled(nn.ReLU):
        def backprop(self, grad_out):
            return super().backprop(grad_out) * 2.0

    layer = Scaled()
    calls = []
    layer.register_full_backward_hook(lambda m, gi, go: calls.append(gi.copy()))
    layer(numpy.array([1.0, -1.0]))
    layer.backward(numpy.array([3.0, 3.0]))
    assert len(calls) == 1 and calls[0].tolist() == [6.0, 0.0]
    from npalexnet import kernels
    assert kernels.choose(layer, numpy.ones(2)) is None
    assert kernels.choose(nn.ReLU(), numpy.ones(2)) is not None


def test_loss_forward_hook_gets_logits_and_targets_and_backward_default_grad():
    crit = nn.CrossEntropyLoss()
    seen = {}
    crit.register_forward_hook(lambda m, inp, out: seen.update(inp=inp, out=out))
    crit.register_full_backward_hook(lambda m, gi, go: seen.update(gi=gi, go=go))
    logits, targets = numpy.zeros((2, 3)), numpy.array([0, 2])
    loss = crit(logits, targets)
    assert seen["inp"][0] is logits and seen["inp"][1] is targets and seen["out"] == loss
    crit.backward()
    assert seen["go"] == 1.0 and seen["gi"].shape == (2, 3)


def test_hooks_can_replace_output_and_grad_input_and_be_removed():
    relu = nn.ReLU()
    h1 = relu.register_forward_hook(lambda m, i, o: o * 10)
    h2 = relu.register_full_backward_hook(lambda m, gi, go: gi + 1)
    x = numpy.array([1.0, -2.0])
    assert relu(x).tolist() == [10.0, 0.0]
    assert relu.backward(numpy.array([1.0, 1.0])).tolist() == [2.0, 1.0]
    h1.remove()
    h2.remove()
    assert relu(x).tolist() == [1.0, 0.0]
    assert relu.backward(numpy.array([1.0, 1.0])).tolist() == [1.0, 0.0]

