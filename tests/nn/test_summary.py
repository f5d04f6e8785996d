"""Module.summary: parameter counts against torch, multiply-adds against torch's flop counter, cost."""

import time

import numpy
import pytest
import torch

from npalexnet import kernels, nn
from npalexnet.gradcheck.torch_twin import to_torch
from npalexnet.models import INPUT_SIZE, alexnet
from npalexnet.nn.summary import layer_rows, summary


def total_line(text, label):
    line = next(l for l in text.splitlines() if l.startswith(label))
    return int(line.split(":")[1].split("(")[0].replace(",", ""))


def test_paper_and_torchvision_totals():
    paper = alexnet("paper").summary((3, 227, 227))
    assert total_line(paper, "Total params") == 60_965_224
    tv = alexnet("torchvision").summary((1, 3, 224, 224))
    assert total_line(tv, "Total params") == 61_100_840
    import torchvision
    with torch.device("meta"):
        reference = torchvision.models.alexnet()
    assert sum(p.numel() for p in reference.parameters()) == 61_100_840
    # torchvision's model table gives AlexNet 0.71 GFLOPS (multiply-adds of conv and linear layers).
    assert total_line(tv, "Mult-adds") == 714_188_480


@pytest.mark.parametrize("variant, kwargs", [
    ("paper", {"width": 0.25}), ("paper", {"width": 0.25, "groups": 1, "lrn": False}),
    ("torchvision", {"width": 0.25}), ("cifar", {"width": 0.5, "lrn": True}),
    ("cifar", {"in_channels": 1, "num_classes": 7}), ("bn", {"width": 0.25}),
])
def test_counts_and_multiply_adds_match_torch(variant, kwargs):
    model = alexnet(variant, **kwargs)
    size = INPUT_SIZE[variant]
    channels = kwargs.get("in_channels", 3)
    rows = layer_rows(model, (2, channels, size, size))
    twin = to_torch(model).eval()
    assert sum(r.params for r in rows) == sum(p.numel() for p in twin.parameters())
    assert total_line(summary(model, (2, channels, size, size)), "Total params") == \
        sum(p.numel() for p in twin.parameters())
    # Output shapes: the twin's forward hooks.
    shapes = {}
    for name, m in twin.named_modules():
        if name and not list(m.children()):
            m.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        twin(torch.zeros(2, channels, size, size))
    assert {r.name: r.output_shape for r in rows} == shapes
    assert sum(r.macs for r in rows) * 2 == counter.get_total_flops()


def test_row_contents_and_activation_memory():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 5)).astype("float64")
    rows = layer_rows(model, (3, 8, 8))
    assert [r.name for r in rows] == ["0", "1", "2", "3"]
    conv, relu, _, fc = rows
    assert conv.output_shape == (1, 8, 4, 4) and conv.params == 8 * 27 + 8 and conv.macs == 8 * 16 * 27
    assert relu.macs == 0 and relu.activation_bytes == 8 * 16 * 8        # float64: 8 bytes
    assert fc.output_shape == (1, 5) and fc.macs == 128 * 5
    text = model.summary((3, 8, 8))
    assert "Conv2d" in text and "(1, 8, 4, 4)" in text and "float64" in text


def test_summary_is_shape_only_and_cheap():
    model = alexnet("paper")
    start = time.perf_counter()
    text = model.summary((128, 3, 227, 227))
    assert time.perf_counter() - start < 0.2
    assert "(128, 96, 55, 55)" in text
    assert all(p.grad is None for p in model.parameters())


def test_unknown_layer_falls_back_to_a_forward_pass():
    class Double(nn.Module):
        def forward(self, x):
            return numpy.concatenate([x, x], axis=1)

        def backward(self, g):
            return g[:, : g.shape[1] // 2] + g[:, g.shape[1] // 2:]

    model = nn.Sequential(nn.Linear(4, 3), Double(), nn.Linear(6, 2))
    rows = layer_rows(model, (5, 4))
    assert [r.output_shape for r in rows] == [(5, 3), (5, 6), (5, 2)]
    assert model.training


def test_bad_input_shape_names_the_layer():
    with pytest.raises(ValueError, match="Conv2d"):
        alexnet("cifar").summary((1, 32, 32))


def test_a_probe_on_another_device_than_the_parameters_is_refused_with_both_devices_named():
    conv = nn.Conv2d(3, 8, 3)
    conv.check_input(kernels.Probe((2, 3, 8, 8), "float32", "cpu"))
    with pytest.raises(TypeError, match="input is on cuda but the parameters are on cpu"):
        conv.check_input(kernels.Probe((2, 3, 8, 8), "float32", "cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["cifar", "paper"])
def test_summary_of_a_model_on_the_gpu_describes_the_gpu_implementations(variant):
    model = alexnet(variant).to("cuda")
    size = INPUT_SIZE[variant]
    rows = layer_rows(model, (128, 3, size, size))
    cpu_rows = layer_rows(alexnet(variant), (128, 3, size, size))
    assert [(r.name, r.output_shape, r.macs) for r in rows] == [(r.name, r.output_shape, r.macs) for r in cpu_rows]
    assert "Conv2d" in model.summary((128, 3, size, size))
