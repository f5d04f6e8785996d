"""benchmarks/profile_layers.py: the per-layer profile times every layer through the seam."""

from __future__ import annotations

import pytest

from npalexnet.nn import Module
from tests.benchmarks.scripts import load


def test_every_layer_of_a_training_step_is_timed_forward_and_backward():
    profile_layers = load("profile_layers")
    call, backward = Module.__call__, Module.backward
    rows, total = profile_layers.profile("cifar", batch=2, steps=1)
    labels = [label for label, _, _ in rows]
    assert labels[0] == "features.0 Conv2d" and labels[-2:] == ["loss", "SGD step"]
    assert len(labels) == 23   # the 21 leaf layers of the CIFAR net, the loss, the update
    for label, fwd, bwd in rows:
        # Through __call__: a layer whose fast path the seam chose is timed too (timing its
        # forward() would read zero for it, and leave nothing for its backward).
        assert fwd > 0, label
        if label.split()[-1] in ("Conv2d", "Linear", "ReLU", "MaxPool2d", "Dropout"):
            assert bwd > 0, label
    assert 0 < sum(f + b for _, f, b in rows) < 2 * total
    assert Module.__call__ is call and Module.backward is backward   # the timers came off


def test_the_timers_come_off_when_a_step_fails(monkeypatch):
    from npalexnet import optim

    profile_layers = load("profile_layers")
    call, backward = Module.__call__, Module.backward

    class Boom(RuntimeError):
        pass

    def failing_step(self):   # after a forward and a backward pass through the timers
        raise Boom

    monkeypatch.setattr(optim.SGD, "step", failing_step)
    with pytest.raises(Boom):
        profile_layers.profile("cifar", batch=2, steps=1)
    assert Module.__call__ is call and Module.backward is backward
