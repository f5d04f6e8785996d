"""Batch normalisation over (N, H, W) per channel (the Paperspace tutorial's variant)."""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ._utils import check_array, check_matches_params
from .module import Module, Parameter


class BatchNorm2d(Module):
    r"""Normalise each channel with batch statistics (training) or running ones (eval).

    Notation: M = N*H*W values per channel.
    Shapes: weight (gamma), bias (beta), running_mean, running_var: (C,);
    input x: (N, C, H, W) -> output y of the same shape.

    Forward (training), per channel:

    .. math:: \mu = \tfrac1M \textstyle\sum x, \quad
              \sigma^2 = \tfrac1M \textstyle\sum (x-\mu)^2, \quad
              \hat x = (x-\mu)/\sqrt{\sigma^2+\epsilon}, \quad
              y = \gamma \hat x + \beta

    and, as torch does, the running statistics move by ``momentum`` using the
    *unbiased* variance ``sigma^2 * M/(M-1)`` (``momentum=None``: a cumulative
    average over ``num_batches_tracked`` batches).

    Backward (training), all sums per channel over M values:

    .. math:: \partial\gamma = \textstyle\sum dY\,\hat x, \quad
              \partial\beta = \textstyle\sum dY, \quad
              \partial x = \frac{\gamma}{M\sqrt{\sigma^2+\epsilon}}
              \big(M\,dY - \textstyle\sum dY - \hat x \sum dY\,\hat x\big)

    In eval mode the statistics are constants: :math:`\partial x = dY\,\gamma/\sqrt{\sigma^2_{run}+\epsilon}`.
    """

    saved_for_backward = ("x_hat", "inv_std", "batch_statistics")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.weight = Parameter(numpy.ones(num_features, dtype=numpy.float32))
        self.bias = Parameter(numpy.zeros(num_features, dtype=numpy.float32))
        self.register_buffer("running_mean", numpy.zeros(num_features, dtype=numpy.float32))
        self.register_buffer("running_var", numpy.ones(num_features, dtype=numpy.float32))
        self.register_buffer("num_batches_tracked", numpy.array(0, dtype=numpy.int64))
        self.x_hat = self.inv_std = self.batch_statistics = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x):
        c = self.num_features
        self.batch_statistics = self.training
        if self.training:
            mean = x.mean(axis=(0, 2, 3))
            centred = x - mean.reshape(1, c, 1, 1)
            var = (centred * centred).mean(axis=(0, 2, 3))
            self.inv_std = 1.0 / get_array_module(x).sqrt(var + self.eps)
            self.x_hat = centred * self.inv_std.reshape(1, c, 1, 1)
            self._update_running(mean, var, x.size // c)
        else:
            self.inv_std = 1.0 / get_array_module(x).sqrt(self.running_var + self.eps)
            self.x_hat = (x - self.running_mean.reshape(1, c, 1, 1)) * self.inv_std.reshape(1, c, 1, 1)
        return self.x_hat * self.weight.data.reshape(1, c, 1, 1) + self.bias.data.reshape(1, c, 1, 1)

    def _update_running(self, mean, var, m: int) -> None:
        self.num_batches_tracked = self.num_batches_tracked + 1
        factor = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
        unbiased = var * (m / (m - 1))
        self.running_mean = (1 - factor) * self.running_mean + factor * mean
        self.running_var = (1 - factor) * self.running_var + factor * unbiased

    def backprop(self, grad_out):
        c, x_hat = self.num_features, self.x_hat
        sum_dy = grad_out.sum(axis=(0, 2, 3))
        sum_dy_xhat = (grad_out * x_hat).sum(axis=(0, 2, 3))
        self.weight.accumulate_grad(sum_dy_xhat)
        self.bias.accumulate_grad(sum_dy)
        scale = (self.weight.data * self.inv_std).reshape(1, c, 1, 1)
        if not self.batch_statistics:   # eval mode: the statistics were constants
            return grad_out * scale
        m = x_hat.size // c
        return scale * (grad_out - (sum_dy / m).reshape(1, c, 1, 1) - x_hat * (sum_dy_xhat / m).reshape(1, c, 1, 1))

    def check_input(self, x):
        check_array(self, x, 4, "(N, C, H, W)", self.num_features)
        check_matches_params(self, x, self.weight)
        if self.training and x.size // self.num_features < 2:
            raise ValueError(f"{self!r}: expected more than 1 value per channel in training "
                             f"mode, got input of shape {tuple(x.shape)}")

    def torch_equivalent(self):
        return ("BatchNorm2d", (self.num_features,), {"eps": self.eps, "momentum": self.momentum})

    def output_shape(self, input_shape):
        return tuple(input_shape)
