"""SGD, Adam and AdamW: several steps match torch.optim to float64 precision; resuming."""

import numpy
import pytest
import torch

from npalexnet import nn, optim
from npalexnet.gradcheck import relative_error
from tests.devicearray import FakeDeviceArray


def twin_parameters(seed=0):
    rng = numpy.random.default_rng(seed)
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal(5), rng.standard_normal((2, 2, 3))]
    ours = [nn.Parameter(a.copy()) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    return ours, theirs


def run_steps(make_ours, make_theirs, steps=6, seed=0, skip_grad_at=None):
    ours, theirs = twin_parameters(seed)
    opt, topt = make_ours(ours), make_theirs(theirs)
    rng = numpy.random.default_rng(seed + 1)
    for step in range(steps):
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            if skip_grad_at == (step, i):
                p.grad, tp.grad = None, None        # a parameter without a gradient is skipped
                continue
            g = rng.standard_normal(p.shape)
            p.grad = g.copy()
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    return ours, theirs, opt


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.9, weight_decay=5e-4),
    dict(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    dict(lr=0.01, momentum=0.5, dampening=0.3, weight_decay=1e-2),
]


@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
def test_sgd_matches_torch(config):
    ours, theirs, _ = run_steps(lambda p: optim.SGD(p, **config), lambda p: torch.optim.SGD(p, **config),
                                skip_grad_at=(2, 1))
    for p, tp in zip(ours, theirs):
        assert relative_error(p.data, tp.detach().numpy()) < 1e-14


ADAM_CONFIGS = [("Adam", dict(lr=1e-3)), ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6)),
                ("Adam", dict(lr=3e-3, weight_decay=1e-2)), ("AdamW", dict(lr=1e-3)),
                ("AdamW", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
                ("AdamW", dict(lr=3e-3, weight_decay=0.0))]


@pytest.mark.parametrize("name, config", ADAM_CONFIGS, ids=str)
def test_adam_and_adamw_match_torch(name, config):
    ours, theirs, _ = run_steps(lambda p: getattr(optim, name)(p, **config),
                                lambda p: getattr(torch.optim, name)(p, **config), steps=8, skip_grad_at=(3, 0))
    for p, tp in zip(ours, theirs):
        assert relative_error(p.data, tp.detach().numpy()) < 1e-13


def test_adamw_decouples_the_decay_from_adams_step():
    """With a decay, AdamW and Adam (L2) take different steps; without one, the same."""
    decoupled, _, _ = run_steps(lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1), lambda p: torch.optim.SGD(p))
    coupled, _, _ = run_steps(lambda p: optim.Adam(p, lr=1e-2, weight_decay=0.1), lambda p: torch.optim.SGD(p))
    assert all(relative_error(a.data, b.data) > 1e-4 for a, b in zip(decoupled, coupled))
    plain_w, _, _ = run_steps(lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.0), lambda p: torch.optim.SGD(p))
    plain, _, _ = run_steps(lambda p: optim.Adam(p, lr=1e-2), lambda p: torch.optim.SGD(p))
    for a, b in zip(plain_w, plain):
        numpy.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True),
    lambda p: optim.Adam(p, lr=1e-2),
    lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.05),
])
def test_state_dict_resume_gives_identical_updates(make):
    ours, _ = twin_parameters()
    resumed, _ = twin_parameters()
    opt = make(ours)
    rng = numpy.random.default_rng(0)
    grads = [[rng.standard_normal(p.shape) for p in ours] for _ in range(6)]
    for step in range(3):
        for p, g in zip(ours, grads[step]):
            p.grad = g
        opt.step()
    for p, q in zip(resumed, ours):
        p.data = q.data.copy()
    opt2 = make(resumed)
    opt2.load_state_dict(opt.state_dict())
    for step in range(3, 6):
        for p, q, g in zip(ours, resumed, grads[step]):
            p.grad, q.grad = g, g.copy()
        opt.step()
        opt2.step()
    for p, q in zip(ours, resumed):
        numpy.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_takes_state_saved_on_the_device():
    """A state dict saved on a GPU holds CuPy arrays, scalar counters among them (0-d arrays)."""
    ours, _ = twin_parameters()
    opt = optim.Adam(ours, lr=1e-2)
    for p in ours:
        p.grad = numpy.ones(p.shape)
    opt.step()
    saved = opt.state_dict()
    on_device = {"state": {i: {k: FakeDeviceArray(numpy.asarray(v)) for k, v in s.items()}
                           for i, s in saved["state"].items()},
                 "param_groups": saved["param_groups"]}
    again = optim.Adam(ours, lr=1e-2)
    again.load_state_dict(on_device)
    for i, state in saved["state"].items():
        assert again.state[i]["step"] == state["step"] == 1 and type(again.state[i]["step"]) is int
        numpy.testing.assert_array_equal(again.state[i]["exp_avg"], state["exp_avg"])


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_parameter_groups_without_weight_decay_match_torch(name):
    """Per-group hyper-parameters (here: no weight decay on the 1-D "bias") as torch.optim's param groups."""
    kwargs = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-2, "nesterov": True} if name == "SGD" else \
        {"lr": 1e-2, "weight_decay": 5e-2}

    def groups(params):
        return [{"params": [params[0], params[2]]}, {"params": [params[1]], "weight_decay": 0.0}]

    ours, theirs, opt = run_steps(lambda p: getattr(optim, name)(groups(p), **kwargs),
                                  lambda p: getattr(torch.optim, name)(groups(p), **kwargs))
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-2, 0.0]
    for p, tp in zip(ours, theirs):
        assert relative_error(p.data, tp.detach().numpy()) < 1e-13


def test_optimizer_zero_grad_and_param_groups():
    ours, _ = twin_parameters()
    opt = optim.SGD([{"params": ours[:1], "lr": 1.0}, {"params": ours[1:]}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.1]
    for p in ours:
        p.grad = numpy.ones(p.shape)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_optimizer_errors():
    ours, _ = twin_parameters()
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Parameters"):
        optim.SGD([numpy.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(ours, lr=0.1, nesterov=True)
    opt = optim.SGD(ours, lr=0.1, momentum=0.9)
    for p in ours:
        p.grad = numpy.ones(p.shape)
    opt.step()
    state = opt.state_dict()
    state["state"][0]["momentum_buffer"] = numpy.zeros((9, 9))
    with pytest.raises(ValueError, match="has shape"):
        optim.SGD(ours, lr=0.1, momentum=0.9).load_state_dict(state)


def test_sgd_keeps_float32_parameters_float32():
    p = nn.Parameter(numpy.ones(3, dtype=numpy.float32))
    p.grad = numpy.ones(3, dtype=numpy.float32)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    opt.step()
    opt.step()
    assert p.data.dtype == numpy.float32
