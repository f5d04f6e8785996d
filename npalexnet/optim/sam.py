"""Sharpness-aware minimisation's weight perturbation (Foret et al., "Sharpness-Aware
Minimization for Efficiently Improving Generalization", ICLR 2021).

Notation: :math:`w` all the trainable parameters together, :math:`L` the batch's mean
loss, :math:`g = \\nabla_w L(w)` its gradient (over the whole global batch), :math:`\\rho`
the radius.

SAM minimises the worst loss in a ball around the weights,
:math:`\\min_w \\max_{\\|\\epsilon\\|_2 \\le \\rho} L(w + \\epsilon)`. To first order the
inner maximum is at

.. math::
    \\hat\\epsilon(w) = \\rho \\, \\frac{g}{\\|g\\|_2}, \\qquad
    \\|g\\|_2 = \\sqrt{\\textstyle\\sum_{\\text{parameters}} \\sum_{\\text{elements}} g^2},

and the step takes the gradient there, :math:`g_{SAM} = \\nabla_w L(w)\\,|_{w + \\hat\\epsilon(w)}`,
with :math:`\\hat\\epsilon` held constant (the paper's approximation: no second-order
term). The optimizer then updates :math:`w` itself, not :math:`w + \\hat\\epsilon`, with
:math:`g_{SAM}` in place of :math:`g` (momentum, weight decay and the learning rate as
they are).

:class:`SharpnessPerturbation` is the two moves around that second gradient:
:meth:`~SharpnessPerturbation.ascend` (to :math:`w + \\hat\\epsilon`, from the gradients
the parameters hold) and :meth:`~SharpnessPerturbation.restore` (back to :math:`w`,
bit for bit: the weights are copied, not un-added, so rounding cannot drift them).
The training step (:func:`npalexnet.train.step.train_step`) runs the second forward and
backward pass between the two.
"""

from __future__ import annotations

from .clip import grad_norm


class SharpnessPerturbation:
    """Move parameters to :math:`w + \\rho g / \\|g\\|_2` and back.

    Args:
        params: the parameters to perturb (those the optimizer updates); their ``grad``
            holds :math:`g` when :meth:`ascend` is called (None: a parameter without a
            gradient is left where it is).
        radius: :math:`\\rho > 0`.
    """

    def __init__(self, params, radius: float):
        if not radius > 0:
            raise ValueError(f"the perturbation's radius must be > 0, got {radius}")
        self.params, self.radius = list(params), float(radius)
        self._saved = None

    def grad_norm(self) -> float:
        """:math:`\\|g\\|_2` over every parameter with a gradient (:func:`~npalexnet.optim.clip.grad_norm`)."""
        return grad_norm(self.params)

    def ascend(self) -> float:
        """``w <- w + rho g / ||g||`` in place (the weights saved first); returns ``||g||``.

        A zero gradient moves nothing (there is no direction to climb).
        """
        if self._saved is not None:
            raise RuntimeError("SharpnessPerturbation.ascend: the weights are already perturbed; restore() first")
        norm = self.grad_norm()
        self._saved = [(p, p.data.copy()) for p in self.params if p.grad is not None]
        if norm > 0:
            for p, _ in self._saved:
                p.data += p.grad * p.data.dtype.type(self.radius / norm)
        return norm

    def restore(self) -> None:
        """Put back the weights :meth:`ascend` saved (a no-op when nothing is perturbed)."""
        for p, data in self._saved or ():
            p.data[...] = data
        self._saved = None
