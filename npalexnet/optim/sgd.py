"""Stochastic gradient descent with momentum, Nesterov and weight decay (torch.optim.SGD)."""

from __future__ import annotations

from .optimizer import Optimizer


class SGD(Optimizer):
    r"""torch.optim.SGD's exact update, with momentum dampening :math:`\tau` (0 by default).

    For each parameter :math:`p` with gradient :math:`g`:

    .. math::
        d = g + \lambda p \\
        b \leftarrow d \ \text{(first step)}, \quad b \leftarrow \mu b + (1 - \tau) d \ \text{(later)} \\
        d \leftarrow d + \mu b \ \text{(Nesterov)} \quad\text{or}\quad d \leftarrow b \\
        p \leftarrow p - \eta d

    The paper's rule (Section 5) is this with :math:`\mu = 0.9`,
    :math:`\lambda = 5\cdot 10^{-4}` except that it folds :math:`\eta` into the
    momentum buffer; the two agree while the learning rate is constant.

    Fast path (seam ``"sgd"``): the same operations per element in one numba pass.
    """

    seam = "sgd"

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, dampening: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr ({lr}), momentum ({momentum}) and weight_decay "
                             f"({weight_decay}) must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, dampening=dampening))

    def update(self, p, grad, state, group) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        d = grad + wd * p.data if wd else grad
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = d.copy()
                state["momentum_buffer"] = buf
            else:
                buf *= mu
                buf += (1.0 - group["dampening"]) * d if group["dampening"] else d
            d = d + mu * buf if group["nesterov"] else buf
        p.data -= p.data.dtype.type(lr) * d
