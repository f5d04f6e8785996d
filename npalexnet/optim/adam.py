"""Adam (Kingma and Ba, 2015) and AdamW (Loshchilov and Hutter, 2019) with torch.optim's exact updates."""

from __future__ import annotations

import math

from ..backend import get_array_module
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""torch.optim.Adam (L2 weight decay added to the gradient, no AMSGrad).

    .. math::
        g \leftarrow g + \lambda p, \quad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam: invalid hyper-parameters lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def decay(self, p, grad, group):
        """Weight decay as L2 regularisation: the gradient of ``lambda/2 ||p||^2`` joins the gradient (and is
        then scaled by Adam's per-coordinate step, unlike in :class:`AdamW`)."""
        wd = group["weight_decay"]
        return grad + wd * p.data if wd else grad

    def update(self, p, grad, state, group) -> None:
        xp = get_array_module(p.data)
        b1, b2 = group["betas"]
        grad = self.decay(p, grad, group)
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * grad
        v *= b2
        v += (1.0 - b2) * grad * grad
        step_size = group["lr"] / (1.0 - b1 ** t)
        denom = xp.sqrt(v) / math.sqrt(1.0 - b2 ** t) + group["eps"]
        p.data -= p.data.dtype.type(step_size) * (m / denom)


class AdamW(Adam):
    r"""torch.optim.AdamW: Adam with decoupled weight decay (Loshchilov and Hutter, "Decoupled Weight Decay
    Regularization", ICLR 2019).

    .. math::
        p \leftarrow p\,(1 - \eta \lambda), \quad \text{then Adam's step on } g \text{ alone}

    The decay shrinks the weights by the same factor whatever their gradients' history, where Adam's L2
    term is divided by :math:`\sqrt{v}` and so decays the weights with large gradients least. torch's
    default decay is 0.01.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def decay(self, p, grad, group):
        """Decoupled: ``p <- p (1 - lr wd)`` before the step; the gradient is left as it is."""
        wd = group["weight_decay"]
        if wd:
            p.data *= p.data.dtype.type(1.0 - group["lr"] * wd)
        return grad
