"""Learning-rate schedules against torch's and their closed forms."""

import math

import numpy
import pytest
import torch

from npalexnet import nn, optim

# torch warns when a scheduler steps before its optimizer; these tests step only the schedule.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


def make_pair(lr=0.1):
    ours = optim.SGD([nn.Parameter(numpy.zeros(2))], lr=lr, momentum=0.9)
    theirs = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=lr, momentum=0.9)
    return ours, theirs


def lrs(scheduler, steps):
    out = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def test_step_lr_matches_torch():
    ours, theirs = make_pair()
    a = lrs(optim.StepLR(ours, step_size=3, gamma=0.5), 10)
    b = lrs(torch.optim.lr_scheduler.StepLR(theirs, step_size=3, gamma=0.5), 10)
    numpy.testing.assert_allclose(a, b, rtol=1e-12)


def test_cosine_matches_torch():
    ours, theirs = make_pair()
    a = lrs(optim.CosineAnnealingLR(ours, T_max=8, eta_min=1e-3), 8)
    b = lrs(torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=8, eta_min=1e-3), 8)
    numpy.testing.assert_allclose(a, b, rtol=1e-10)


def test_warmup_linear_rises_then_falls_to_zero():
    ours, _ = make_pair(lr=0.05)
    sched = optim.WarmupLinearLR(ours, total_steps=20, warmup=0.25)
    values = lrs(sched, 20)
    assert sched.warmup_steps == 5
    numpy.testing.assert_allclose(values[:5], [0.01, 0.02, 0.03, 0.04, 0.05])
    assert max(values) == pytest.approx(0.05)
    assert all(b <= a for a, b in zip(values[4:], values[5:]))
    assert values[19] == pytest.approx(0.05 / 15) and values[20] == 0.0


def test_warmup_cosine_has_the_same_warm_up_then_a_half_cosine_to_zero():
    ours, _ = make_pair(lr=0.05)
    sched = optim.WarmupCosineLR(ours, total_steps=25, warmup=0.2)
    values = lrs(sched, 25)
    linear, _ = make_pair(lr=0.05)
    assert values[:5] == lrs(optim.WarmupLinearLR(linear, total_steps=25, warmup=0.2), 25)[:5]
    # decay step t (0-based) of 20: base (1 + cos(pi t / 20)) / 2
    numpy.testing.assert_allclose(values[5:25], [0.05 * (1 + math.cos(math.pi * t / 20)) / 2 for t in range(20)],
                                  rtol=1e-12)
    assert values[5] == 0.05 and values[15] == pytest.approx(0.025) and values[25] == 0.0
    assert all(b <= a for a, b in zip(values[4:], values[5:]))
    # the cosine stays above the linear decay in its first half and below it in its second
    line = lrs(optim.WarmupLinearLR(make_pair(lr=0.05)[0], total_steps=25, warmup=0.2), 25)
    assert all(c > lin for c, lin in zip(values[6:15], line[6:15]))
    assert all(c < lin for c, lin in zip(values[16:25], line[16:25]))


@pytest.mark.parametrize("shape", [optim.WarmupLinearLR, optim.WarmupCosineLR])
def test_a_floor_ends_the_decay_early_and_holds(shape):
    """SWA's schedule: the same warm-up, the decay compressed to end at decay_end on floor x peak, then held."""
    ours, _ = make_pair(lr=0.05)
    values = lrs(shape(ours, total_steps=20, warmup=4, floor=0.2, decay_end=0.6), 20)
    plain = lrs(shape(make_pair(lr=0.05)[0], total_steps=20, warmup=4), 20)
    assert values[:4] == plain[:4]                                  # the warm-up is the same
    # decay step t (0-based) of 8: base (0.2 + 0.8 decay(t / 8))
    numpy.testing.assert_allclose(values[4:12], [0.05 * (0.2 + 0.8 * shape.decay(t / 8)) for t in range(8)],
                                  rtol=1e-12)
    assert values[12:20] == [0.05 * 0.2] * 8 and values[20] == 0.0   # held at the floor to the last step
    assert all(b <= a for a, b in zip(values[4:], values[5:20]))


def test_a_floor_s_bad_arguments_get_one_line():
    ours, _ = make_pair()
    with pytest.raises(ValueError, match=r"WarmupLinearLR: floor must be a fraction of the peak in \[0, 1\]"):
        optim.WarmupLinearLR(ours, total_steps=10, warmup=2, floor=1.5)
    with pytest.raises(ValueError, match=r"the decay must end between the warm-up's end \(5\) and the last "
                                         r"step \(10\), got 3"):
        optim.WarmupLinearLR(ours, total_steps=10, warmup=5, decay_end=3)


@pytest.mark.parametrize("make", [lambda o: optim.CosineAnnealingLR(o, T_max=10),
                                  lambda o: optim.WarmupLinearLR(o, total_steps=10, warmup=3, floor=0.3,
                                                                 decay_end=6),
                                  lambda o: optim.WarmupLinearLR(o, total_steps=10, warmup=3),
                                  lambda o: optim.WarmupCosineLR(o, total_steps=10, warmup=3)])
def test_scheduler_resume_continues_the_same_curve(make):
    ours, _ = make_pair()
    sched = make(ours)
    for _ in range(4):
        sched.step()
    other, _ = make_pair()
    resumed = make(other)
    resumed.load_state_dict(sched.state_dict())
    assert lrs(resumed, 5) == lrs(sched, 5)


def test_plateau_divides_by_ten_after_patience():
    ours, theirs = make_pair()
    metrics = [0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7]
    sched = optim.ReduceLROnPlateau(ours, mode="max", factor=0.1, patience=2)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, mode="max", factor=0.1, patience=2)
    for m in metrics:
        sched.step(m)
        tsched.step(m)
        assert math.isclose(ours.lr, theirs.param_groups[0]["lr"], rel_tol=1e-12)
    assert ours.lr == pytest.approx(0.001)


def test_scheduler_argument_errors():
    ours, _ = make_pair()
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(ours, step_size=0)
    with pytest.raises(ValueError, match="does not fit"):
        optim.WarmupLinearLR(ours, total_steps=10, warmup=20)
    with pytest.raises(ValueError, match="WarmupCosineLR: warm-up of 20 steps does not fit"):
        optim.WarmupCosineLR(ours, total_steps=10, warmup=20)
    with pytest.raises(TypeError, match="npalexnet optimizer"):
        optim.StepLR(object(), step_size=1)


def test_plateau_divides_at_most_max_reductions_times():
    """The paper's schedule: divided by 10 when validation stops improving, three times at most."""
    opt = optim.SGD([nn.Parameter(numpy.zeros(2))], lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=1, max_reductions=3)
    lrs = []
    for _ in range(20):                        # never improves after the first epoch
        sched.step(0.5)
        lrs.append(opt.param_groups[0]["lr"])
    assert sched.reductions == 3
    assert sorted(set(lrs), reverse=True) == pytest.approx([0.01, 0.001, 0.0001, 0.00001])
    restored = optim.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=1, max_reductions=3)
    restored.load_state_dict(sched.state_dict())
    restored.step(0.4)
    restored.step(0.4)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5) and restored.reductions == 3
