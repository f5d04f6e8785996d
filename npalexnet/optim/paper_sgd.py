"""The paper's stochastic gradient descent: momentum and weight decay in the form of Section 5."""

from __future__ import annotations

from ..backend import get_array_module
from .optimizer import Optimizer


class PaperSGD(Optimizer):
    r"""Krizhevsky et al. (2012), Section 5: "The update rule for weight w was

    .. math::
        v_{i+1} = 0.9\, v_i - 0.0005\, \epsilon\, w_i - \epsilon \left\langle \frac{\partial L}{\partial w}
        \Big|_{w_i} \right\rangle_{D_i}, \qquad w_{i+1} = w_i + v_{i+1}

    where i is the iteration index, v is the momentum variable, :math:`\epsilon`
    is the learning rate", :math:`\langle\cdot\rangle_{D_i}` the gradient
    averaged over the batch. Here :math:`\mu` (0.9) and :math:`\lambda`
    (0.0005) are ``momentum`` and ``weight_decay``; v starts at 0; every
    parameter (biases too) is decayed.

    How it maps onto ``torch.optim.SGD`` (dampening 0, no Nesterov), which
    keeps a buffer in gradient units, :math:`b \leftarrow \mu b + (g + \lambda w)`,
    :math:`w \leftarrow w - \epsilon b`:

    * while :math:`\epsilon` is constant, :math:`v = -\epsilon b` after every
      step and the two produce the same weights (to rounding);
    * when :math:`\epsilon` changes from :math:`\epsilon_1` to :math:`\epsilon_2`,
      the paper's v carries the velocity gathered at the old rate, while torch's
      step scales the carried velocity by :math:`\epsilon_2/\epsilon_1` at once.
      The paper's rule is exactly torch's with the buffer multiplied by
      :math:`\epsilon_1/\epsilon_2` at the change; without that, the first
      step after the change moves w by :math:`\mu(\epsilon_2 - \epsilon_1) b`
      less than the paper's (b the buffer before the step), a difference that
      then decays by :math:`\mu` per step. After the paper's division by 10,
      torch's form damps the carried velocity tenfold at once; the paper's lets
      it fade over some 20 steps.

    Both are tested against ``torch.optim.SGD`` (tests/optim/test_paper_sgd.py).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"PaperSGD: need lr >= 0 ({lr}), 0 <= momentum < 1 ({momentum}) and "
                             f"weight_decay >= 0 ({weight_decay})")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def update(self, p, grad, state, group) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        w = p.data
        cast = w.dtype.type
        v = state.get("velocity")
        if v is None:
            v = state["velocity"] = get_array_module(w).zeros_like(w)
        v *= cast(mu)                       # v <- mu v
        if wd:
            v -= cast(wd * lr) * w          #      - lambda eps w
        v -= cast(lr) * grad                #      - eps dL/dw
        w += v                              # w <- w + v
