"""BatchNorm2d against torch in train and eval mode, running statistics included."""

import numpy
import pytest
import torch

import npalexnet
from npalexnet import nn
from npalexnet.gradcheck import relative_error
from npalexnet.gradcheck.torch_compare import check_against_torch
from npalexnet.gradcheck.torch_twin import copy_weights


def _randomised(module, seed=0):
    rng = numpy.random.default_rng(seed)
    module.weight.data = rng.uniform(0.5, 1.5, module.weight.shape).astype(module.weight.dtype)
    module.bias.data = rng.standard_normal(module.bias.shape).astype(module.bias.dtype)
    module.running_mean = rng.standard_normal(module.num_features).astype(numpy.float32)
    module.running_var = rng.uniform(0.5, 2.0, module.num_features).astype(numpy.float32)
    return module


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_torch(training, dtype, xp):
    module = _randomised(nn.BatchNorm2d(4)).train(training)
    ref = torch.nn.BatchNorm2d(4).train(training)
    x = 3 + 2 * numpy.random.default_rng(1).standard_normal((3, 4, 5, 6))
    check_against_torch(module, ref, x, xp=xp, dtype=dtype)
    # Running statistics and the batch counter move exactly as torch's.
    for name, value in ref.state_dict().items():
        assert relative_error(npalexnet.asnumpy(module.state_dict()[name]), value.numpy()) < 1e-6, name


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_over_several_batches(momentum):
    module = nn.BatchNorm2d(3, momentum=momentum).astype("float64")
    ref = torch.nn.BatchNorm2d(3, momentum=momentum).double()
    rng = numpy.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((2, 3, 4, 4)) * 2 + 1
        module(x)
        ref(torch.tensor(x))
    for name, value in ref.state_dict().items():
        numpy.testing.assert_allclose(module.state_dict()[name], value.numpy(), rtol=1e-12)
    assert int(module.num_batches_tracked) == 4


def test_batchnorm_state_dict_loads_from_torch_including_num_batches_tracked():
    ref = torch.nn.BatchNorm2d(3)
    ref(torch.randn(4, 3, 2, 2))
    module = nn.BatchNorm2d(3)
    module.load_state_dict(ref.state_dict())
    assert int(module.num_batches_tracked) == 1
    assert list(module.state_dict()) == list(ref.state_dict())
    assert module.num_batches_tracked.dtype == numpy.int64


def test_batchnorm_rejects_one_value_per_channel_and_wrong_channels():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(3)(numpy.zeros((1, 3, 1, 1), dtype=numpy.float32))
    with pytest.raises(ValueError, match="expected 3 channels"):
        nn.BatchNorm2d(3)(numpy.zeros((2, 4, 2, 2), dtype=numpy.float32))


def test_copy_weights_helper_round_trip():
    module = _randomised(nn.BatchNorm2d(2))
    ref = torch.nn.BatchNorm2d(2)
    copy_weights(module, ref)
    numpy.testing.assert_array_equal(ref.running_var.numpy(), module.running_var)
