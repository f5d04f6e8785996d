"""to_torch: same names, same function, dropout masks replayed."""

import numpy
import pytest
import torch

from npalexnet import nn
from npalexnet.gradcheck.torch_twin import to_tensor, to_torch
from npalexnet.models import alexnet


@pytest.mark.parametrize("variant, size", [("cifar", 32), ("bn", 227), ("torchvision", 224), ("paper", 227)])
def test_twin_has_the_same_names_and_computes_the_same_function(variant, size):
    model = alexnet(variant, width=0.0625).astype("float64").eval()
    twin = to_torch(model)
    assert list(twin.state_dict()) == list(model.state_dict())
    assert not twin.training
    x = numpy.random.default_rng(0).standard_normal((2, 3, size, size))
    numpy.testing.assert_allclose(model(x), twin(to_tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-12)


def test_dropout_replays_the_npalexnet_mask_or_draws_its_own():
    layer = nn.Dropout(0.5).astype("float64")
    x = numpy.ones((4, 50))
    with pytest.raises(RuntimeError, match="before the torch twin"):
        to_torch(layer)(to_tensor(x))
    y = layer(x)
    numpy.testing.assert_array_equal(to_torch(layer)(to_tensor(x)).numpy(), y)
    assert isinstance(to_torch(layer, replay_dropout=False), torch.nn.Dropout)


def test_unknown_module_is_refused():
    class Custom(nn.Module):
        pass

    with pytest.raises(TypeError, match="no torch twin for Custom"):
        to_torch(Custom())
