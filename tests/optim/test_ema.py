"""The weights' exponential moving average: the formula, its warm-up, every-k averaging, the
uniform mean of stochastic weight averaging, swapping the average in for evaluation, and exact
resuming."""

from __future__ import annotations

import numpy
import pytest

from npalexnet import nn, optim


def _model(seed=0, dtype=numpy.float64):
    rng = numpy.random.default_rng(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    for p in model.parameters():
        p.data = rng.standard_normal(p.shape).astype(dtype)
    return model


def _train_steps(model, steps, ema=None, seed=1):
    """Stand-in for training: random changes of every float entry (BatchNorm's statistics and its
    integer step count included), ``ema.update`` after each."""
    rng = numpy.random.default_rng(seed)
    history = []
    for _ in range(steps):
        for value in model.state_dict().values():
            if value.dtype.kind == "f":
                value += rng.standard_normal(value.shape).astype(value.dtype)
            else:
                value += 1
        history.append({k: v.copy() for k, v in model.state_dict().items()})
        if ema is not None:
            ema.update(model)
    return history


@pytest.mark.parametrize("warmup", [True, False])
def test_average_is_the_formula(warmup):
    model = _model()
    start = {k: v.copy() for k, v in model.state_dict().items()}
    ema = optim.ExponentialMovingAverage(model, 0.9, warmup=warmup)
    history = _train_steps(model, 25, ema)
    for name, value in start.items():
        if value.dtype.kind != "f":   # integer buffers are copied, not averaged
            assert ema.shadow[name] == history[-1][name]
            continue
        expected = value.copy()
        for t, weights in enumerate(history, start=1):
            d = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
            expected = d * expected + (1 - d) * weights[name]
        numpy.testing.assert_allclose(ema.shadow[name], expected, rtol=1e-13, atol=1e-13, err_msg=name)
    assert ema.num_updates == 25


def test_warmup_decay():
    ema = optim.ExponentialMovingAverage(_model(), 0.999)
    assert ema.decay_at(1) == pytest.approx(2 / 11)           # the random start fades fast
    assert ema.decay_at(5000) == pytest.approx(5001 / 5010)   # still below 0.999 ...
    assert ema.decay_at(10000) == 0.999                       # ... which it reaches after ~9000 steps
    assert optim.ExponentialMovingAverage(_model(), 0.999, warmup=False).decay_at(1) == 0.999


def test_every_k_steps_uses_the_product_of_the_decays():
    model = _model()
    start = {k: v.copy() for k, v in model.state_dict().items()}
    ema = optim.ExponentialMovingAverage(model, 0.95, every=3)
    history = _train_steps(model, 8, ema)
    name = "0.weight"
    expected = start[name]
    for t in (3, 6):   # steps 7 and 8 are not averaged yet
        d = numpy.prod([min(0.95, (1 + s) / (10 + s)) for s in range(t - 2, t + 1)])
        expected = d * expected + (1 - d) * history[t - 1][name]
    numpy.testing.assert_allclose(ema.shadow[name], expected, rtol=1e-13)


@pytest.mark.parametrize("every", [1, 3])
def test_uniform_from_is_the_plain_mean_of_the_weights_sampled_after_it(every):
    """SWA: from step S on, the mean of the weights at steps S + every, S + 2 every, ... (each weighing
    the same); before S the moving average, which the first sample replaces."""
    model = _model()
    ema = optim.ExponentialMovingAverage(model, 0.9, every=every, uniform_from=6)
    history = _train_steps(model, 6, ema) + _train_steps(model, 12, ema, seed=2)
    sampled = [h for t, h in enumerate(history, start=1) if t > 6 and t % every == 0]
    assert len(sampled) == 12 // every
    for name in ema.shadow:
        if ema.shadow[name].dtype.kind != "f":
            continue
        expected = numpy.mean([h[name] for h in sampled], axis=0, dtype=numpy.float64)
        tol = 1e-12 if ema.shadow[name].dtype == numpy.float64 else 1e-6   # BatchNorm's statistics: float32
        numpy.testing.assert_allclose(ema.shadow[name], expected, rtol=tol, atol=tol, err_msg=name)


def test_uniform_from_starts_after_the_moving_average_and_resumes_exactly():
    a, b = _model(), _model()
    plain = optim.ExponentialMovingAverage(_model(), 0.9, every=2)
    ema_a = optim.ExponentialMovingAverage(a, 0.9, every=2, uniform_from=8)
    _train_steps(a, 8, ema_a, seed=1)
    _train_steps(_model(), 8, plain, seed=1)
    for name in plain.shadow:   # up to the start it is the moving average
        numpy.testing.assert_array_equal(ema_a.shadow[name], plain.shadow[name])
    _train_steps(a, 3, ema_a, seed=2)   # into the uniform phase, then resumed into a fresh object
    for name, value in a.state_dict().items():
        b.state_dict()[name][...] = value
    ema_b = optim.ExponentialMovingAverage(b, 0.9, every=2)
    ema_b.load_state_dict({k: (dict(v) if k == "shadow" else v) for k, v in ema_a.state_dict().items()})
    assert ema_b.uniform_from == 8
    _train_steps(a, 5, ema_a, seed=3)
    _train_steps(b, 5, ema_b, seed=3)
    for name in ema_a.shadow:
        numpy.testing.assert_array_equal(ema_a.shadow[name], ema_b.shadow[name])
    old = {k: v for k, v in ema_a.state_dict().items() if k != "uniform_from"}   # saved before it existed
    ema_b.load_state_dict(old)
    assert ema_b.uniform_from is None


def test_float32_blend_in_chunks_matches_float64():
    """The CPU blend works in cache-sized chunks; a tensor larger than one chunk gives the plain formula."""
    model = nn.Sequential(nn.Linear(300, 400))
    for p in model.parameters():
        p.data = numpy.random.default_rng(0).standard_normal(p.shape).astype(numpy.float32)
    start = model[0].weight.data.astype(numpy.float64)
    ema = optim.ExponentialMovingAverage(model, 0.9, warmup=False)
    model[0].weight.data += 1.0
    ema.update(model)
    assert ema.shadow["0.weight"].dtype == numpy.float32
    numpy.testing.assert_allclose(ema.shadow["0.weight"], 0.9 * start + 0.1 * (start + 1.0), rtol=1e-6, atol=1e-6)


def test_applied_swaps_the_average_in_and_restores_the_weights():
    model = _model()
    ema = optim.ExponentialMovingAverage(model, 0.5)
    _train_steps(model, 4, ema)
    own = {k: v.copy() for k, v in model.state_dict().items()}
    with ema.applied(model):
        for name, value in model.state_dict().items():
            numpy.testing.assert_array_equal(value, ema.shadow[name])
    for name, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, own[name])
    with pytest.raises(RuntimeError, match="boom"), ema.applied(model):
        raise RuntimeError("boom")
    numpy.testing.assert_array_equal(model.state_dict()["0.weight"], own["0.weight"])   # restored after an error
    ema.copy_to(model)
    numpy.testing.assert_array_equal(model.state_dict()["0.weight"], ema.shadow["0.weight"])


def test_state_dict_resumes_exactly_and_checks_shapes():
    a, b = _model(), _model()
    ema_a = optim.ExponentialMovingAverage(a, 0.9, every=2)
    _train_steps(a, 5, ema_a, seed=1)
    for name, value in a.state_dict().items():
        b.state_dict()[name][...] = value
    ema_b = optim.ExponentialMovingAverage(b, 0.5)           # other hyper-parameters: the state wins
    ema_b.load_state_dict({k: (dict(v) if k == "shadow" else v) for k, v in ema_a.state_dict().items()})
    assert (ema_b.decay, ema_b.every, ema_b.num_updates) == (0.9, 2, 5)
    _train_steps(a, 4, ema_a, seed=2)
    _train_steps(b, 4, ema_b, seed=2)
    for name in ema_a.shadow:
        numpy.testing.assert_array_equal(ema_a.shadow[name], ema_b.shadow[name])
    state = ema_a.state_dict()
    state["shadow"] = {**state["shadow"], "0.weight": numpy.zeros((1, 1))}
    with pytest.raises(ValueError, match="0.weight has shape"):
        ema_b.load_state_dict(state)
    state["shadow"] = {k: v for k, v in state["shadow"].items() if k != "0.bias"}
    with pytest.raises(ValueError, match=r"missing \['0.bias'\]"):
        ema_b.load_state_dict(state)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        optim.ExponentialMovingAverage(_model(), 1.0)
    with pytest.raises(ValueError, match="every must be >= 1"):
        optim.ExponentialMovingAverage(_model(), 0.9, every=0)
    with pytest.raises(ValueError, match="uniform_from must be a step >= 0"):
        optim.ExponentialMovingAverage(_model(), 0.9, uniform_from=-1)
