"""``no_grad()``: forward passes that keep nothing for a backward pass (torch.no_grad).

Inside the context no layer keeps what its backward pass would need (ReLU
masks, im2col matrices, max-pool winners, LRN inputs: each layer's
``saved_for_backward``): evaluation and prediction use less memory. A
``backward()`` after such a forward raises the usual "backward before
forward" error. The mode is the ``grad_enabled`` setting of
:mod:`npalexnet.config`, so it nests and is restored on exit, also on error.
"""

from __future__ import annotations

from .. import config


def is_grad_enabled() -> bool:
    """False inside :func:`no_grad`."""
    return config.current().grad_enabled


def no_grad():
    """Run forward passes without keeping what backward needs (a ``with`` block)."""
    return config.using(grad_enabled=False)
