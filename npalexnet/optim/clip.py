r"""The gradient's global norm, and clipping by it (torch.nn.utils.clip_grad_norm_).

Notation: :math:`g` the gradients of all the parameters together, :math:`c` the largest norm allowed.

.. math::
    \|g\|_2 = \sqrt{\textstyle\sum_{\text{parameters}} \sum_{\text{elements}} g^2}, \qquad
    g \leftarrow g \cdot \min\Big(1, \frac{c}{\|g\|_2 + 10^{-6}}\Big)

Clipping keeps the gradient's direction and bounds the step a single batch can take, which is what
keeps a run alive through a loss spike (Pascanu et al., "On the difficulty of training recurrent
neural networks", ICML 2013). The training step clips after the gradients are averaged over the
ranks, so every rank clips alike. ``10^{-6}`` is torch's guard against a zero norm.
"""

from __future__ import annotations

import math

from ..backend import asnumpy, get_array_module


def grad_norm(params) -> float:
    """:math:`\\|g\\|_2` over every parameter with a gradient (0.0 when none has one).

    Each parameter's sum of squares in its dtype, their total in float64 on the parameters'
    device, then one transfer (on a GPU each transfer waits for the queued work).
    """
    grads = [p.grad.ravel() for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = get_array_module(grads[0])
    squares = xp.stack([xp.vdot(g, g).astype(xp.float64) for g in grads])
    return math.sqrt(float(asnumpy(squares.sum())))


def clip_grad_norm(params, max_norm: float, eps: float = 1e-6) -> float:
    """Scale the gradients in place so that their global norm is at most about ``max_norm``
    (``max_norm / (||g|| + eps)`` when that is below 1, else nothing changes).

    Returns:
        :math:`\\|g\\|_2` before clipping (as torch's ``clip_grad_norm_``); a non-finite norm leaves
        the gradients as they are (the run's checks on the loss and the weights stop it).
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be > 0, got {max_norm}")
    params = list(params)
    norm = grad_norm(params)
    coefficient = max_norm / (norm + eps)
    if math.isfinite(norm) and coefficient < 1.0:
        for p in params:
            if p.grad is not None:
                p.grad *= p.grad.dtype.type(coefficient)
    return norm
