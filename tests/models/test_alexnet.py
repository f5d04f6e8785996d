"""Whole models: every variant forward and backward against the same net in torch."""

import numpy
import pytest
import torch
import torchvision

from npalexnet import nn
from npalexnet.gradcheck.torch_compare import check_against_torch
from npalexnet.gradcheck.torch_twin import to_torch
from npalexnet.models import INPUT_SIZE, VARIANTS, alexnet

# Reduced widths and inputs keep these float64 whole-net checks to seconds.
MODEL_CASES = [
    ("cifar", dict(width=0.25), 32),
    ("cifar", dict(width=0.25, lrn=True), 32),
    ("paper", dict(width=0.125, num_classes=10), 227),
    ("paper", dict(width=0.125, num_classes=10, groups=1), 227),
    ("torchvision", dict(width=0.125, num_classes=10), 100),    # avgpool from 2x2 to 6x6
    ("bn", dict(width=0.125, num_classes=10), 227),
    ("cifar", dict(width=0.25, in_channels=1), 28 + 4),         # FashionMNIST, padded to 32
]


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("variant, kwargs, size", MODEL_CASES, ids=lambda c: str(c))
def test_variant_matches_torch(variant, kwargs, size, dtype, xp):
    model = alexnet(variant, **kwargs).eval()     # eval: dropout off, so both nets are deterministic
    if variant == "bn":
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0                              # BN in training mode, dropout off
    twin = to_torch(model, replay_dropout=False)    # the same layers in torch, dropout p=0 as in `model`
    x = numpy.random.default_rng(0).standard_normal((2, kwargs.get("in_channels", 3), size, size))
    check_against_torch(model, twin, x, xp=xp, dtype=dtype)


def test_torchvision_weights_give_the_same_logits_and_gradients():
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(num_classes=10).double().eval()
    model = alexnet("torchvision", num_classes=10).astype("float64").eval()
    model.load_state_dict(reference.state_dict())
    assert list(model.state_dict()) == list(reference.state_dict())
    x = numpy.random.default_rng(0).standard_normal((2, 3, 224, 224))
    # torchvision's own module (not a twin), holding the weights it gave us
    comparison = check_against_torch(model, reference, x, dtype=numpy.float64)
    assert set(comparison.errors) == {"output", "input"} | set(reference.state_dict()) - {
        k for k, _ in reference.named_buffers()}


@pytest.mark.parametrize("variant, kwargs, expected", [
    ("paper", {}, 60_965_224),
    ("paper", dict(groups=1), 62_378_344),
    ("torchvision", {}, 61_100_840),
    ("cifar", {}, 23_272_266),
])
def test_parameter_counts(variant, kwargs, expected):
    model = alexnet(variant, **kwargs)
    assert sum(p.size for p in model.parameters()) == expected


def test_parameter_names_match_torchvision_and_the_bn_tutorial():
    assert list(alexnet("torchvision").state_dict()) == list(torchvision.models.alexnet().state_dict())
    bn_keys = list(alexnet("bn", num_classes=10).state_dict())
    assert bn_keys[:7] == ["layer1.0.weight", "layer1.0.bias", "layer1.1.weight", "layer1.1.bias",
                           "layer1.1.running_mean", "layer1.1.running_var", "layer1.1.num_batches_tracked"]
    assert bn_keys[-2:] == ["fc2.0.weight", "fc2.0.bias"]


def test_half_width_is_the_flowers_net_and_one_channel_input_works():
    model = alexnet("paper", num_classes=5, width=0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48, 128, 192, 192, 128]
    gray = alexnet("cifar", in_channels=1)
    assert gray(numpy.zeros((2, 1, 32, 32), dtype=numpy.float32)).shape == (2, 10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_at_its_input_size(variant):
    model = alexnet(variant, num_classes=7, width=0.125)
    size = INPUT_SIZE[variant]
    y = model(numpy.zeros((1, 3, size, size), dtype=numpy.float32))
    assert y.shape == (1, 7) and y.dtype == numpy.float32


def test_paper_init_draws_small_weights_and_unit_biases():
    model = alexnet("paper", init="paper", width=0.25, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert abs(float(convs[0].weight.data.std()) - 0.01) < 1e-3
    assert [float(c.bias.data[0]) for c in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert [float(m.bias.data[0]) for m in linears] == [1.0, 1.0, 0.0]
    caffe = alexnet("paper", init="paper", paper_bias=0.1, width=0.25, num_classes=10)
    assert float([m for m in caffe.modules() if isinstance(m, nn.Conv2d)][1].bias.data[0]) == pytest.approx(0.1)


@pytest.mark.parametrize("variant, kwargs", [("cifar", {}), ("paper", dict(width=0.125, num_classes=10))])
def test_kaiming_init_draws_he_weights_and_zero_biases(variant, kwargs):
    model = alexnet(variant, init="kaiming", **kwargs)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        w = layer.weight.data
        fan_in = int(numpy.prod(w.shape[1:]))          # in_channels / groups * kh * kw, or in_features
        gain = 1.0 if layer is layers[-1] else numpy.sqrt(2.0)
        assert float(w.std()) == pytest.approx(gain / numpy.sqrt(fan_in), rel=0.1), layer
        assert abs(float(w.mean())) < 0.1 * float(w.std())
        assert not layer.bias.data.any()
    if variant == "paper":                             # grouped conv2: fan_in counts one group's channels
        assert layers[1].weight.shape[1] * 2 == layers[0].weight.shape[0]


def _second_moments(model, x):
    """E[y^2] of every conv and linear layer's output, in forward order (eval mode: no dropout)."""
    moments, h = [], x
    for layer in list(model.features) + [nn.Flatten()] + list(model.classifier):
        h = layer(h)
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            moments.append(float((h.astype(numpy.float64) ** 2).mean()))
    return moments


def test_kaiming_init_keeps_the_signal_where_torch_s_default_shrinks_it():
    """Why the option exists: with PyTorch's default the cifar net's logits start about 10^4 times
    weaker than its first layer's output (the first epoch learns almost nothing); He's init keeps every
    layer's second moment within a small factor of the first's."""
    x = numpy.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(numpy.float32)
    torch_default = _second_moments(alexnet("cifar", init="torch").eval(), x)
    he = _second_moments(alexnet("cifar", init="kaiming").eval(), x)
    assert torch_default[-1] < 1e-2 * torch_default[0]
    assert all(0.1 < m / he[0] < 20 for m in he), he


def test_paper_lrn_uses_paper_constants():
    lrns = [m for m in alexnet("paper").modules() if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == 2
    assert all((m.size, m.alpha, m.beta, m.k) == (5, 5e-4, 0.75, 2.0) for m in lrns)


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="vgg"), "unknown AlexNet variant"),
    (dict(variant="cifar", num_classes=0), "num_classes"),
    (dict(variant="torchvision", lrn=True), "no LRN"),
    (dict(variant="cifar", init="xavier"), "init must be"),
])
def test_alexnet_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        alexnet(**kwargs)


def test_wrong_input_size_names_the_layer():
    with pytest.raises(ValueError, match="Linear"):
        alexnet("cifar")(numpy.zeros((1, 3, 64, 64), dtype=numpy.float32))


def test_groups_is_validated_only_where_it_is_used():
    """Only the paper's net has grouped convolutions: a bad value there is an error, elsewhere it is ignored."""
    with pytest.raises(ValueError, match="groups must be 1 or 2, got 3"):
        alexnet("paper", width=0.125, groups=3)
    for variant in ("torchvision", "cifar", "bn"):
        assert all(m.groups == 1 for m in alexnet(variant, width=0.125, groups=3).modules()
                   if isinstance(m, nn.Conv2d))
