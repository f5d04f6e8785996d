"""AlexNet and its known variants, composed from the hand-written layers.

``alexnet(variant, num_classes, in_channels=3, ...)`` builds:

* ``"paper"``: Krizhevsky, Sutskever and Hinton (2012), "ImageNet
  Classification with Deep Convolutional Neural Networks": 227x227 input,
  conv 96-256-384-384-256 (11/4, 5, 3, 3, 3), ReLU then LRN after conv1 and
  conv2 (Section 3.3, the paper's constants k=2, n=5, alpha=1e-4, beta=0.75),
  overlapping max-pool 3/2 (Section 3.4), FC 4096-4096 with dropout 0.5
  after the two hidden FC layers (Section 4.2, Caffe's placement), and
  groups=2 on conv2, conv4 and conv5 (Section 3.5's two-GPU split) unless
  ``groups=1``. 60,965,224 parameters with groups=2 and 1000 classes.
* ``"torchvision"``: exactly ``torchvision.models.alexnet`` (64-192-384-256-256,
  AdaptiveAvgPool2d(6), dropout before fc6 and fc7), same state_dict keys, so
  its weights load directly and give the same logits.
* ``"cifar"``: the 32x32 CIFAR-10 adaptation: 3x3 convs 64-192-384-256-256
  (conv1 with stride 2), three 2x2 max-pools, FC 1024-4096-4096-K with
  dropout, the net PyTorch's CIFAR-10 reference numbers are measured on.
  ``lrn=True`` adds the paper's LRN after conv1 and conv2.
* ``"bn"``: the Paperspace tutorial's AlexNet with BatchNorm after every
  convolution (227x227 input, 96-256-384-384-256), keys ``layer1..layer5``,
  ``fc``, ``fc1``, ``fc2`` as in that tutorial.

``width`` scales every convolution and hidden FC width (0.5 gives the flowers
tutorial's 48-128-192-192-128 net); ``in_channels=1`` serves FashionMNIST.

``init="torch"`` keeps each layer's PyTorch default; ``init="paper"`` draws
weights from N(0, 0.01) and sets biases to ``paper_bias`` in conv2, conv4,
conv5 and the hidden FC layers, 0 elsewhere (Section 5). The paper used 1;
Caffe's reference model found that 1 can leave the loss flat and uses 0.1.
``init="kaiming"`` draws every convolution's and hidden linear layer's weights
from N(0, 2 / fan_in) (He et al. 2015, for ReLU nets), the output layer's
from N(0, 1 / fan_in), and sets every bias to 0: the signal neither shrinks nor
grows through the ReLU layers at the start, where PyTorch's default shrinks it
about sqrt(6) times per layer.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy

from .. import nn
from ..backend import get_array_module
from ..nn import init as nn_init

VARIANTS = ("paper", "torchvision", "cifar", "bn")
#: The initialisations ``alexnet(init=...)`` knows (see the module docstring).
INITS = ("torch", "paper", "kaiming")

#: Input height/width each variant is designed for.
INPUT_SIZE = {"paper": 227, "torchvision": 224, "cifar": 32, "bn": 227}


def _scaled(width: float, *channels: int) -> list[int]:
    return [max(1, int(round(c * width))) for c in channels]


class _Stages(nn.Sequential):
    """A Sequential of named stages whose first ``frozen_stages`` may be frozen.

    :func:`npalexnet.models.freeze` sets ``frozen_stages`` (0 by default):
    those stages run without keeping anything for backward, and the backward
    pass stops before them (as torch skips the part of a graph that needs no
    gradient), so it returns None. ``feature_stages`` are the stages
    ``freeze(model, "features")`` means.
    """

    feature_stages: tuple = ()
    frozen_stages = 0

    def forward(self, x):
        stages = list(self.children())
        with nn.no_grad():   # frozen stages: no backward pass will reach them
            for stage in stages[:self.frozen_stages]:
                x = stage(x)
        for stage in stages[self.frozen_stages:]:
            x = stage(x)
        return x

    def backprop(self, grad_out, input_grad: bool = True):
        if not self.frozen_stages:
            return super().backprop(grad_out, input_grad)
        trainable = list(self.children())[self.frozen_stages:]
        for i in range(len(trainable) - 1, -1, -1):   # the first trainable stage's input needs no gradient
            grad_out = trainable[i].backward(grad_out, input_grad=i > 0)
        return None


class AlexNet(_Stages):
    """``features`` (conv stack) -> optional ``avgpool`` -> ``flatten`` -> ``classifier``, applied in
    that order (a :class:`~npalexnet.nn.Sequential` with named stages).

    The attribute names are torchvision's, so state_dict keys match
    (``features.0.weight``, ``classifier.1.weight``, ...).
    """

    feature_stages = ("features",)

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential,
                 avgpool: nn.Module | None = None, variant: str = "custom"):
        stages = [("features", features), ("avgpool", avgpool), ("flatten", nn.Flatten(1)),
                  ("classifier", classifier)]
        super().__init__(OrderedDict((name, m) for name, m in stages if m is not None))
        self.variant = variant


class AlexNetBN(_Stages):
    """The Paperspace tutorial's BatchNorm AlexNet, with its attribute names (``layer1`` .. ``fc2``)."""

    feature_stages = ("layer1", "layer2", "layer3", "layer4", "layer5")

    def __init__(self, num_classes: int, in_channels: int, width: float, dropout: float):
        c1, c2, c3, c4, c5, h = _scaled(width, 96, 256, 384, 384, 256, 4096)

        def block(cin, cout, k, s, p, pool):
            layers = [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(3, 2))
            return nn.Sequential(*layers)

        super().__init__(OrderedDict([
            ("layer1", block(in_channels, c1, 11, 4, 0, True)),
            ("layer2", block(c1, c2, 5, 1, 2, True)),
            ("layer3", block(c2, c3, 3, 1, 1, False)),
            ("layer4", block(c3, c4, 3, 1, 1, False)),
            ("layer5", block(c4, c5, 3, 1, 1, True)),
            ("flatten", nn.Flatten(1)),
            ("fc", nn.Sequential(nn.Dropout(dropout), nn.Linear(c5 * 6 * 6, h), nn.ReLU())),
            ("fc1", nn.Sequential(nn.Dropout(dropout), nn.Linear(h, h), nn.ReLU())),
            ("fc2", nn.Sequential(nn.Linear(h, num_classes))),
        ]))
        self.variant = "bn"


def _paper_features(in_channels, widths, groups, lrn):
    c1, c2, c3, c4, c5 = widths
    layers = [nn.Conv2d(in_channels, c1, 11, stride=4), nn.ReLU()]
    if lrn:
        layers.append(nn.LocalResponseNorm.from_paper())
    layers += [nn.MaxPool2d(3, 2), nn.Conv2d(c1, c2, 5, padding=2, groups=groups), nn.ReLU()]
    if lrn:
        layers.append(nn.LocalResponseNorm.from_paper())
    layers += [nn.MaxPool2d(3, 2),
               nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
               nn.Conv2d(c3, c4, 3, padding=1, groups=groups), nn.ReLU(),
               nn.Conv2d(c4, c5, 3, padding=1, groups=groups), nn.ReLU(),
               nn.MaxPool2d(3, 2)]
    return nn.Sequential(*layers)


def _torchvision_features(in_channels, widths):
    c1, c2, c3, c4, c5 = widths
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))


def _cifar_features(in_channels, widths, lrn):
    c1, c2, c3, c4, c5 = widths
    layers = [nn.Conv2d(in_channels, c1, 3, stride=2, padding=1), nn.ReLU()]
    if lrn:
        layers.append(nn.LocalResponseNorm.from_paper())
    layers += [nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU()]
    if lrn:
        layers.append(nn.LocalResponseNorm.from_paper())
    layers += [nn.MaxPool2d(2),
               nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
               nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
               nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


def alexnet(variant: str = "cifar", num_classes: int | None = None, in_channels: int = 3, *,
            width: float = 1.0, groups: int = 2, lrn: bool | None = None, dropout: float = 0.5,
            init: str = "torch", paper_bias: float = 1.0) -> nn.Module:
    """Build an AlexNet variant (see the module docstring).

    Args:
        variant: ``"paper"``, ``"torchvision"``, ``"cifar"`` or ``"bn"``.
        num_classes: output classes (default 1000, or 10 for ``"cifar"``).
        in_channels: 3 for colour images, 1 for FashionMNIST.
        width: multiplier on every convolution and hidden FC width.
        groups: 2 (the paper's two-GPU split) or 1; ``"paper"`` only.
        lrn: LRN after conv1 and conv2 (default: on for ``"paper"``, off for ``"cifar"``).
        dropout: dropout probability of the hidden FC layers.
        init: ``"torch"`` (PyTorch's defaults), ``"paper"`` or ``"kaiming"``.
        paper_bias: bias of conv2/4/5 and hidden FC layers under ``init="paper"``.
    Returns:
        The model, float32, on the CPU (move it with ``.to(device)``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown AlexNet variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    if num_classes is None:
        num_classes = 10 if variant == "cifar" else 1000
    if num_classes < 1 or in_channels < 1 or width <= 0:
        raise ValueError(f"alexnet: num_classes ({num_classes}) and in_channels ({in_channels}) "
                         f"must be >= 1 and width ({width}) > 0")
    if init not in INITS:
        raise ValueError(f"alexnet: init must be one of {', '.join(INITS)}, got {init!r}")
    if variant == "paper" and groups not in (1, 2):   # only the paper's net has grouped convolutions
        raise ValueError(f"alexnet: groups must be 1 or 2, got {groups}")
    if lrn and variant in ("torchvision", "bn"):
        raise ValueError(f"alexnet: the {variant!r} variant has no LRN layers")

    if variant == "bn":
        model = AlexNetBN(num_classes, in_channels, width, dropout)
    else:
        hidden = _scaled(width, 4096)[0]
        if variant == "paper":
            widths = _scaled(width, 96, 256, 384, 384, 256)
            features = _paper_features(in_channels, widths, groups, True if lrn is None else lrn)
            classifier = nn.Sequential(
                nn.Linear(widths[4] * 6 * 6, hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, num_classes))
            model = AlexNet(features, classifier, variant=variant)
        elif variant == "torchvision":
            widths = _scaled(width, 64, 192, 384, 256, 256)
            classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(widths[4] * 6 * 6, hidden), nn.ReLU(),
                nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, num_classes))
            model = AlexNet(_torchvision_features(in_channels, widths), classifier,
                            avgpool=nn.AdaptiveAvgPool2d((6, 6)), variant=variant)
        else:
            widths = _scaled(width, 64, 192, 384, 256, 256)
            classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(widths[4] * 2 * 2, hidden), nn.ReLU(),
                nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, num_classes))
            model = AlexNet(_cifar_features(in_channels, widths, bool(lrn)), classifier,
                            variant=variant)
    if init == "paper":
        apply_paper_init(model, paper_bias)
    elif init == "kaiming":
        apply_kaiming_init(model)
    return model


def apply_paper_init(model: nn.Module, bias_value: float = 1.0) -> nn.Module:
    """Section 5 of the paper: weights ~ N(0, 0.01); bias ``bias_value`` in conv2,
    conv4, conv5 and the hidden FC layers, 0 in the others."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    ones = {id(convs[i]) for i in (1, 3, 4) if i < len(convs)} | {id(m) for m in linears[:-1]}
    for layer in convs + linears:
        dtype = layer.weight.data.dtype
        weight = nn_init.normal(layer.weight.shape, 0.01, dtype=dtype)
        layer.weight.data = _like(layer.weight.data, weight)
        if layer.bias is not None:
            value = bias_value if id(layer) in ones else 0.0
            layer.bias.data = _like(layer.bias.data, numpy.full(layer.bias.shape, value, dtype=dtype))
    return model


def apply_kaiming_init(model: nn.Module) -> nn.Module:
    """He et al. (2015): weights ~ N(0, 2 / fan_in) in every Conv2d and Linear
    that a ReLU follows, N(0, 1 / fan_in) in the last Linear (the logits), biases
    0; BatchNorm keeps its (1, 0). ``fan_in`` is ``in_channels / groups * kh * kw``
    for a convolution, ``in_features`` for a linear layer."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        shape = layer.weight.shape
        fan_in = int(numpy.prod(shape[1:]))
        gain = 1.0 if layer is layers[-1] else numpy.sqrt(2.0)
        dtype = layer.weight.data.dtype
        layer.weight.data = _like(layer.weight.data,
                                  nn_init.normal(shape, nn_init.he_std(fan_in, gain), dtype=dtype))
        if layer.bias is not None:
            layer.bias.data = _like(layer.bias.data, numpy.zeros(layer.bias.shape, dtype=dtype))
    return model


def _like(reference, host_array):
    """``host_array`` on the device of ``reference``."""
    return get_array_module(reference).asarray(host_array)
