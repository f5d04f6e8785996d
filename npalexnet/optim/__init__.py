"""Optimizers with torch.optim's exact update rules, and learning-rate schedules."""

from .adam import Adam, AdamW
from .clip import clip_grad_norm, grad_norm
from .ema import ExponentialMovingAverage
from .lr_scheduler import (ConstantLR, CosineAnnealingLR, LRScheduler, ReduceLROnPlateau, StepLR,
                           WarmupCosineLR, WarmupLinearLR)
from .optimizer import Optimizer
from .paper_sgd import PaperSGD
from .sam import SharpnessPerturbation
from .sgd import SGD

__all__ = ["Adam", "AdamW", "ConstantLR", "CosineAnnealingLR", "ExponentialMovingAverage", "LRScheduler", "Optimizer",
           "PaperSGD", "ReduceLROnPlateau", "SGD", "SharpnessPerturbation", "StepLR", "WarmupCosineLR",
           "WarmupLinearLR", "clip_grad_norm", "grad_norm"]
