"""Layers with hand-written forward and backward passes, torch-compatible names.

Each layer is one module whose ``forward`` and ``backprop`` are the formula
in array code (NumPy or CuPy); :mod:`.module` holds the machinery they share,
:mod:`.im2col` the convolution's unfolding, :mod:`.summary` the per-layer
table. Faster implementations of the same math live below one seam,
:mod:`npalexnet.kernels`.
"""

from .activation import ReLU
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .grad_mode import is_grad_enabled, no_grad
from .linear import Linear
from .loss import CrossEntropyLoss
from .module import BackwardBeforeForwardError, Module, Parameter, RemovableHandle, Sequential
from .normalization import LocalResponseNorm
from .pooling import AdaptiveAvgPool2d, MaxPool2d

__all__ = [
    "AdaptiveAvgPool2d", "BackwardBeforeForwardError", "BatchNorm2d", "Conv2d", "CrossEntropyLoss",
    "Dropout", "Flatten", "Linear", "LocalResponseNorm", "MaxPool2d", "Module", "Parameter", "ReLU",
    "RemovableHandle", "Sequential", "is_grad_enabled", "no_grad",
]
