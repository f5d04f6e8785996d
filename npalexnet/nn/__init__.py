"""Layers with hand-written forward and backward passes, torch-compatible names."""

from .activation import ReLU
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .grad_mode import is_grad_enabled, no_grad
from .linear import Linear
from .loss import CrossEntropyLoss
from .module import BackwardBeforeForwardError, Module, Parameter, RemovableHandle, Sequential, backward_chain
from .normalization import LocalResponseNorm
from .pooling import AdaptiveAvgPool2d, MaxPool2d

__all__ = [
    "AdaptiveAvgPool2d", "BackwardBeforeForwardError", "BatchNorm2d", "Conv2d", "CrossEntropyLoss",
    "Dropout", "Flatten", "Linear", "LocalResponseNorm", "MaxPool2d", "Module", "Parameter", "ReLU",
    "RemovableHandle", "Sequential", "backward_chain", "is_grad_enabled", "no_grad",
]
