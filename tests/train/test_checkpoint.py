"""Checkpoints: round trip of model and optimizer state, and clear errors for bad files."""

from __future__ import annotations

import numpy
import pytest

from npalexnet import nn, optim
from npalexnet.models import alexnet
from npalexnet.train.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint


def _trained(optimizer_cls=optim.SGD, **kwargs):
    model = alexnet("cifar", 10, width=0.0625)
    opt = optimizer_cls(model.parameters(), lr=0.01, **kwargs)
    crit = nn.CrossEntropyLoss()
    x = numpy.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(numpy.float32)
    for _ in range(2):
        opt.zero_grad()
        crit(model(x), numpy.arange(4))
        model.backward(crit.backward())
        opt.step()
    return model, opt


@pytest.mark.parametrize("optimizer_cls, kwargs", [(optim.SGD, {"momentum": 0.9, "nesterov": True}),
                                                   (optim.Adam, {})])
def test_round_trip(tmp_path, optimizer_cls, kwargs):
    model, opt = _trained(optimizer_cls, **kwargs)
    path = save_checkpoint(tmp_path / "c.npz", model, opt, {"epoch": 3, "classes": ["a", "b"]})
    ckpt = load_checkpoint(path)
    assert ckpt.meta["epoch"] == 3 and ckpt.meta["classes"] == ["a", "b"]
    fresh = alexnet("cifar", 10, width=0.0625)
    load_model_state(fresh, ckpt)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        numpy.testing.assert_array_equal(a, b, err_msg=name)
    fresh_opt = optimizer_cls(fresh.parameters(), lr=0.5, **kwargs)
    fresh_opt.load_state_dict(ckpt.optimizer_state())
    assert fresh_opt.param_groups[0]["lr"] == 0.01
    for i, state in opt.state.items():
        for key, value in state.items():
            numpy.testing.assert_array_equal(fresh_opt.state[i][key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]   # no temporary file left behind


def test_missing_truncated_corrupt_and_foreign_files(tmp_path):
    model, opt = _trained()
    good = save_checkpoint(tmp_path / "good.npz", model, opt, {"epoch": 1})
    data = good.read_bytes()
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.npz")
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "truncated.npz")
    corrupt = bytearray(data)
    corrupt[len(data) // 3: len(data) // 3 + 64] = b"\xff" * 64   # inside an array: the CRC check fails
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "corrupt.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "text.npz")
    numpy.savez(tmp_path / "foreign.npz", weights=numpy.zeros(3))
    with pytest.raises(CheckpointError, match="not an npalexnet checkpoint"):
        load_checkpoint(tmp_path / "foreign.npz")


def test_nan_weights_and_wrong_architecture_are_rejected(tmp_path):
    model, opt = _trained()
    path = save_checkpoint(tmp_path / "c.npz", model, opt, {})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_model_state(alexnet("cifar", 10, width=0.125), load_checkpoint(path))
    next(iter(model.parameters())).data[...] = numpy.nan
    save_checkpoint(tmp_path / "nan.npz", model, opt, {})
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(tmp_path / "nan.npz")


def test_the_weight_average_round_trips_and_is_what_prediction_loads(tmp_path):
    model, opt = _trained(momentum=0.9)
    ema = optim.ExponentialMovingAverage(model, 0.9, every=2)
    ema.update(model)
    ema.update(model)
    for p in model.parameters():   # the trained weights move on: they differ from the average
        p.data += 1.0
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c.npz", model, opt, {"epoch": 1}, ema=ema))
    assert ckpt.meta["ema"] == {"decay": 0.9, "warmup": True, "every": 2, "uniform_from": None, "num_updates": 2}
    trained, averaged = alexnet("cifar", 10, width=0.0625), alexnet("cifar", 10, width=0.0625)
    load_model_state(trained, ckpt)
    load_model_state(averaged, ckpt, averaged=True)
    for name, value in model.state_dict().items():
        numpy.testing.assert_array_equal(trained.state_dict()[name], value, err_msg=name)
        numpy.testing.assert_array_equal(averaged.state_dict()[name], ema.shadow[name], err_msg=name)
    resumed = optim.ExponentialMovingAverage(trained, 0.5)
    resumed.load_state_dict(ckpt.ema_state())
    assert resumed.num_updates == 2 and resumed.every == 2
    # without an average, averaged=True loads the trained weights
    plain = load_checkpoint(save_checkpoint(tmp_path / "d.npz", model, opt, {"epoch": 1}))
    assert plain.ema == {} and plain.ema_state() is None
    load_model_state(averaged, plain, averaged=True)
    numpy.testing.assert_array_equal(averaged.state_dict()["features.0.weight"], model.features[0].weight.data)


def test_nan_in_the_average_is_rejected(tmp_path):
    model, opt = _trained()
    ema = optim.ExponentialMovingAverage(model, 0.9)
    next(iter(ema.shadow.values()))[...] = numpy.nan
    save_checkpoint(tmp_path / "c.npz", model, opt, {}, ema=ema)
    with pytest.raises(CheckpointError, match="averaged weight .* NaN"):
        load_checkpoint(tmp_path / "c.npz")
