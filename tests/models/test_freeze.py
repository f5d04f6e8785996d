"""freeze: leading stages fixed, no backward through them, the optimizer sees only the rest."""

from __future__ import annotations

import numpy
import pytest

import npalexnet
from npalexnet import nn
from npalexnet.models import FreezeError, alexnet, freeze, trainable_parameters
from npalexnet.nn.module import BackwardBeforeForwardError


def _step(model, x, y):
    npalexnet.manual_seed(7)   # the same dropout masks in both models
    criterion = nn.CrossEntropyLoss()
    loss = criterion(model(x), y)
    grad_in = model.backward(criterion.backward(), input_grad=False)
    return float(loss), grad_in


@pytest.mark.parametrize("variant, frozen, size", [("cifar", ["features"], 32), ("bn", [f"layer{i}" for i in
                                                                                     range(1, 6)], 227)])
def test_frozen_features_get_no_gradient_and_the_classifier_the_same_one(variant, frozen, size):
    npalexnet.manual_seed(0)
    reference = alexnet(variant, width=0.125, num_classes=4)
    model = alexnet(variant, width=0.125, num_classes=4)
    model.load_state_dict(reference.state_dict())
    message = freeze(model, "features")
    assert message.startswith(f"frozen: {', '.join(frozen)} (")
    frozen_ids = {id(p) for name in frozen for p in getattr(model, name).parameters()}
    trainable = trainable_parameters(model)
    assert frozen_ids and not frozen_ids & {id(p) for p in trainable}
    assert len(trainable) + len(frozen_ids) == len(list(model.parameters()))

    x = numpy.random.default_rng(0).standard_normal((3, 3, size, size)).astype(numpy.float32)
    y = numpy.array([0, 1, 3])
    loss_frozen, grad_in = _step(model, x, y)
    loss_reference, _ = _step(reference, x, y)
    assert loss_frozen == pytest.approx(loss_reference, rel=1e-6) and grad_in is None
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        if id(p) in frozen_ids:
            assert p.grad is None, name
        else:
            numpy.testing.assert_allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7, err_msg=name)
    first = getattr(model, frozen[0])[0]
    with pytest.raises(BackwardBeforeForwardError):   # the frozen forward kept nothing for a backward
        first.backward(numpy.zeros((3, first.out_channels, 1, 1), dtype=numpy.float32))


def test_errors_name_the_stages():
    model = alexnet("cifar", width=0.125)
    with pytest.raises(FreezeError, match=r"--freeze conv: no such part of the cifar model; its stages are "
                                          r"features, flatten, classifier"):
        freeze(model, "conv")
    with pytest.raises(FreezeError, match=r"only leading stages can be frozen; features would still train"):
        freeze(model, "classifier")
    with pytest.raises(FreezeError, match="that is the whole model, nothing would train"):
        freeze(model, "features,flatten,classifier")
    assert model.frozen_stages == 0 and len(trainable_parameters(model)) == len(list(model.parameters()))
    with pytest.raises(FreezeError, match="freeze works on the AlexNet models"):
        freeze(nn.Sequential(nn.Linear(2, 2)), "features")


def test_bn_stages_by_name_and_a_partial_prefix():
    model = alexnet("bn", width=0.125)
    message = freeze(model, ["layer1", "layer2"])
    assert message.startswith("frozen: layer1, layer2 (")
    assert "training layer3, layer4, layer5, fc, fc1, fc2 (" in message
    assert model.frozen_stages == 2
