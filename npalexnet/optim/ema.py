"""Polyak averaging: an exponential moving average (EMA) of a model's weights.

Notation: :math:`\\theta_t` the weights after optimizer step t (t = 1, 2, ...),
:math:`\\bar\\theta_t` their average, :math:`d` the decay.

.. math::
    d_t = \\min\\Big(d, \\frac{1 + t}{10 + t}\\Big) \\ \\text{(warm-up)} \\quad\\text{or}\\quad d_t = d, \\\\
    \\bar\\theta_t = d_t \\, \\bar\\theta_{t-1} + (1 - d_t) \\, \\theta_t, \\qquad \\bar\\theta_0 = \\theta_0

The average weighs the last :math:`\\approx 1/(1-d)` steps (0.999: the last
thousand), so it smooths out the noise of the last updates of SGD without
the cost of a longer run (Polyak and Juditsky 1992; the form is TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``). The warm-up keeps the
first, random weights from lingering in the average: :math:`1 - d_t \\approx 9/t`,
so early on the average spans about the last ninth of the steps so far, and
the decay reaches d only after about :math:`9/(1-d)` steps (0.999: 9,000).

``every=k`` averages only at every k-th step, with the decay :math:`d_t^k`
(the same horizon in steps): one pass over the weights per k steps instead of
every step, for a large model on a CPU where that pass costs a few percent
of a step.

``uniform_from=S`` turns the average into stochastic weight averaging
(Izmailov et al. 2018) from optimizer step S on: the first average after S
replaces the moving average by the weights of that step, and the k-th blends
in with :math:`d = (k-1)/k`, so the average is the plain mean of the k
weights sampled since S (every ``every``-th step), each weighing the same
(torch's ``AveragedModel`` default), however long the run goes on.

Every floating entry of the model's ``state_dict()`` is averaged (weights,
biases and BatchNorm's running statistics, as timm's ``ModelEmaV2``); integer
buffers are copied. The averages live on the model's device, in its dtype.
"""

from __future__ import annotations

import contextlib

import numpy

from .. import backend

#: Elements blended per in-place pass on the CPU: three small operations on a
#: chunk that stays in the cache instead of three passes over whole arrays.
_CHUNK = 1 << 16


class ExponentialMovingAverage:
    """An EMA of ``model``'s weights, started from its current weights.

    Args:
        model: an npalexnet Module (on the device it trains on).
        decay: d in [0, 1); 0.999 averages over about the last 1000 steps.
        warmup: use :math:`\\min(d, (1+t)/(10+t))` for the early steps.
        every: average at every ``every``-th call of :meth:`update` only.
        uniform_from: from this optimizer step on, the uniform mean of the weights sampled after
            it (stochastic weight averaging) instead of the moving average; None: never.

    Usage::

        ema = ExponentialMovingAverage(model, 0.999)
        for x, y in batches:
            ...; optimizer.step(); ema.update(model)
        with ema.applied(model):      # the averaged weights, for evaluation
            evaluate(model, ...)
    """

    def __init__(self, model, decay: float, *, warmup: bool = True, every: int = 1, uniform_from: int | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"EMA every must be >= 1 step, got {every}")
        if uniform_from is not None and uniform_from < 0:
            raise ValueError(f"EMA uniform_from must be a step >= 0, got {uniform_from}")
        self.decay, self.warmup, self.every = float(decay), bool(warmup), int(every)
        self.uniform_from = None if uniform_from is None else int(uniform_from)
        self.num_updates = 0   # t: optimizer steps seen
        self.shadow = {name: value.copy() for name, value in model.state_dict().items()}

    def decay_at(self, t: int) -> float:
        """:math:`d_t` of one step (before ``every`` raises it to the k-th power)."""
        return min(self.decay, (1.0 + t) / (10.0 + t)) if self.warmup else self.decay

    def update(self, model) -> None:
        """Count one optimizer step; blend the model's weights in at every ``every``-th."""
        self.num_updates += 1
        if self.num_updates % self.every:
            return
        if self.uniform_from is not None and self.num_updates > self.uniform_from:
            k = (self.num_updates - self.uniform_from - 1) // self.every + 1   # the k-th sample after the start
            d = (k - 1) / k
        else:
            d = 1.0
            for t in range(self.num_updates - self.every + 1, self.num_updates + 1):
                d *= self.decay_at(t)
        state = model.state_dict()
        for name, avg in self.shadow.items():
            value = state[name]
            if avg.dtype.kind != "f":
                avg[...] = value
            else:
                _blend(avg, value, d)

    @contextlib.contextmanager
    def applied(self, model):
        """Within the block ``model`` holds the averaged weights; its own come back after."""
        saved = {name: value.copy() for name, value in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    def copy_to(self, model) -> None:
        """Write the averaged weights into ``model`` (e.g. a model for prediction or export)."""
        model.load_state_dict(self.shadow)

    # ------------------------------------------------------------------ resuming
    def state_dict(self) -> dict:
        """``{"decay", "warmup", "every", "uniform_from", "num_updates", "shadow": {name: array}}`` (arrays
        not copied)."""
        return {"decay": self.decay, "warmup": self.warmup, "every": self.every, "uniform_from": self.uniform_from,
                "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        """Restore an average; names and shapes are checked before anything changes."""
        shadow = state["shadow"]
        missing = sorted(set(self.shadow) - set(shadow))
        unexpected = sorted(set(shadow) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(f"ExponentialMovingAverage.load_state_dict: missing {missing}, "
                             f"unexpected {unexpected}")
        for name, value in shadow.items():
            if tuple(value.shape) != tuple(self.shadow[name].shape):
                raise ValueError(f"ExponentialMovingAverage.load_state_dict: {name} has shape "
                                 f"{tuple(value.shape)}, expected {tuple(self.shadow[name].shape)}")
        for name, value in shadow.items():
            target = self.shadow[name]
            xp = backend.get_array_module(target)
            target[...] = xp.asarray(backend.asnumpy(value) if xp is numpy else value, dtype=target.dtype)
        self.decay, self.warmup = float(state["decay"]), bool(state["warmup"])
        self.every, self.num_updates = int(state["every"]), int(state["num_updates"])
        uniform_from = state.get("uniform_from")   # absent in averages saved before it existed: none
        self.uniform_from = None if uniform_from is None else int(uniform_from)


def _blend(avg, value, d: float) -> None:
    """``avg = d * avg + (1 - d) * value`` in place (avg and value of one shape and device)."""
    xp = backend.get_array_module(avg)
    dd, rest = avg.dtype.type(d), avg.dtype.type(1.0 - d)
    if xp is not numpy:   # whole-array operations on the GPU (its bandwidth makes the temporary cheap)
        avg *= dd
        avg += rest * value
        return
    flat_avg, flat_value = avg.reshape(-1), numpy.ravel(value)   # avg is ours: C-contiguous, a view
    scratch = numpy.empty(min(_CHUNK, flat_avg.size), dtype=avg.dtype)
    for start in range(0, flat_avg.size, _CHUNK):
        a, v = flat_avg[start:start + _CHUNK], flat_value[start:start + _CHUNK]
        s = scratch[:a.size]
        numpy.multiply(v, rest, out=s)
        a *= dd
        a += s
