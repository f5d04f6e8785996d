"""The paper's update rule (Section 5): its own formula, and how it maps onto torch.optim.SGD."""

import numpy
import pytest
import torch

from npalexnet import nn, optim
from npalexnet.gradcheck import relative_error

MU, WD = 0.9, 5e-4


def problem(seed=0):
    """A quadratic loss L(w) = w^T A w / 2 - c^T w per parameter: its gradient depends on w."""
    rng = numpy.random.default_rng(seed)
    shapes = [(6,), (3, 4), (2, 5)]
    weights = [rng.standard_normal(s) for s in shapes]
    terms = []
    for w in weights:
        m = rng.standard_normal((w.size, w.size))
        terms.append((m @ m.T / w.size + numpy.eye(w.size), rng.standard_normal(w.size)))
    return weights, terms


def gradient(w, term):
    a, c = term
    return (a @ w.reshape(-1) - c).reshape(w.shape)


def run(lrs, rescale_torch_buffer=True, seed=0):
    """Train the same problem with PaperSGD and torch.optim.SGD, lr ``lrs[step]`` at each step.

    With ``rescale_torch_buffer`` torch's momentum buffers are multiplied by
    old_lr / new_lr whenever the learning rate changes (the exact mapping).
    """
    weights, terms = problem(seed)
    ours = [nn.Parameter(w.copy()) for w in weights]
    theirs = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
    paper = optim.PaperSGD(ours, lr=lrs[0], momentum=MU, weight_decay=WD)
    reference = torch.optim.SGD(theirs, lr=lrs[0], momentum=MU, weight_decay=WD)
    for step, lr in enumerate(lrs):
        for group in paper.param_groups:
            group["lr"] = lr
        old = reference.param_groups[0]["lr"]
        if lr != old and rescale_torch_buffer:
            for p in theirs:
                reference.state[p]["momentum_buffer"].mul_(old / lr)
        reference.param_groups[0]["lr"] = lr
        for p, tp, term in zip(ours, theirs, terms):
            p.grad = gradient(p.data, term)
            tp.grad = torch.tensor(gradient(tp.detach().numpy(), term))
        paper.step()
        reference.step()
    return ours, theirs, paper, reference


def test_one_step_is_the_papers_formula():
    rng = numpy.random.default_rng(3)
    w, v, g = (rng.standard_normal((4, 5)) for _ in range(3))
    p = nn.Parameter(w.copy())
    opt = optim.PaperSGD([p], lr=0.01)                       # the paper's 0.9 and 0.0005 by default
    opt.state[0] = {"velocity": v.copy()}
    p.grad = g
    opt.step()
    v_next = 0.9 * v - 0.0005 * 0.01 * w - 0.01 * g          # v <- 0.9 v - 0.0005 eps w - eps dL/dw
    numpy.testing.assert_allclose(opt.state[0]["velocity"], v_next, rtol=1e-15, atol=1e-17)
    numpy.testing.assert_allclose(p.data, w + v_next, rtol=1e-15, atol=1e-17)   # w <- w + v


def test_equals_torch_sgd_under_a_constant_learning_rate():
    ours, theirs, paper, reference = run([0.05] * 40, rescale_torch_buffer=False)
    for p, tp in zip(ours, theirs):
        assert relative_error(p.data, tp.detach().numpy()) < 1e-13
    for index, tp in enumerate(theirs):                     # v = -eps b
        buffer = reference.state[tp]["momentum_buffer"].numpy()
        assert relative_error(paper.state[index]["velocity"], -0.05 * buffer) < 1e-13


def test_equals_torch_sgd_with_its_buffer_rescaled_at_each_lr_drop():
    lrs = [0.05] * 12 + [0.005] * 12 + [0.0005] * 12          # divided by 10 twice
    ours, theirs, _, _ = run(lrs, rescale_torch_buffer=True)
    for p, tp in zip(ours, theirs):
        assert relative_error(p.data, tp.detach().numpy()) < 1e-12
    _, plain, _, _ = run(lrs, rescale_torch_buffer=False)   # without the rescale, torch's form differs
    assert max(relative_error(p.data, q.detach().numpy()) for p, q in zip(ours, plain)) > 1e-6


def test_the_step_after_a_drop_differs_from_torch_by_mu_times_the_lr_change_times_the_buffer():
    eps1, eps2 = 0.05, 0.005
    ours, theirs, paper, reference = run([eps1] * 10, rescale_torch_buffer=False)
    weights, terms = problem()
    buffers = [reference.state[tp]["momentum_buffer"].numpy().copy() for tp in theirs]
    before = [p.data.copy() for p in ours]
    for group in paper.param_groups:
        group["lr"] = eps2
    reference.param_groups[0]["lr"] = eps2
    for p, tp, term in zip(ours, theirs, terms):
        p.grad = gradient(p.data, term)
        tp.grad = torch.tensor(gradient(tp.detach().numpy(), term))
    paper.step()
    reference.step()
    for p, tp, b, w in zip(ours, theirs, buffers, before):
        # the states agree before the step (constant lr), so the difference is the carried velocity's
        difference = p.data - tp.detach().numpy()
        numpy.testing.assert_allclose(difference, MU * (eps2 - eps1) * b, rtol=1e-9, atol=1e-14)
        assert numpy.abs(difference).max() > 1e-4 * numpy.abs(p.data - w).max()


def test_state_dict_resume_gives_identical_updates():
    weights, terms = problem()
    a = [nn.Parameter(w.copy()) for w in weights]
    opt_a = optim.PaperSGD(a, lr=0.02)
    for _ in range(5):
        for p, term in zip(a, terms):
            p.grad = gradient(p.data, term)
        opt_a.step()
    b = [nn.Parameter(p.data.copy()) for p in a]
    opt_b = optim.PaperSGD(b, lr=0.02)
    opt_b.load_state_dict(opt_a.state_dict())
    for _ in range(3):
        for params, opt in ((a, opt_a), (b, opt_b)):
            for p, term in zip(params, terms):
                p.grad = gradient(p.data, term)
            opt.step()
    for p, q in zip(a, b):
        numpy.testing.assert_array_equal(p.data, q.data)


def test_float32_parameters_stay_float32():
    p = nn.Parameter(numpy.ones((3, 3), dtype=numpy.float32))
    p.grad = numpy.full((3, 3), 0.5, dtype=numpy.float32)
    opt = optim.PaperSGD([p], lr=0.1)
    opt.step()
    assert p.data.dtype == numpy.float32 and opt.state[0]["velocity"].dtype == numpy.float32


@pytest.mark.parametrize("kwargs", [dict(lr=-1.0), dict(lr=0.1, momentum=1.0), dict(lr=0.1, weight_decay=-1e-4)])
def test_bad_hyper_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="PaperSGD"):
        optim.PaperSGD([nn.Parameter(numpy.zeros(2))], **kwargs)
