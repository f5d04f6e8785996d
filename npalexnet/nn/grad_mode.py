"""``no_grad()``: forward passes that keep nothing for a backward pass (torch.no_grad).

Inside the context no layer stores its backward cache (ReLU masks, im2col
matrices, max-pool winners, LRN inputs): evaluation and prediction use less
memory and skip the work that only a backward pass needs. A ``backward()``
after such a forward raises the usual "backward before forward" error.
"""

from __future__ import annotations

import contextlib

_enabled = True


def is_grad_enabled() -> bool:
    """False inside :func:`no_grad`."""
    return _enabled


@contextlib.contextmanager
def no_grad():
    """Run forward passes without keeping what backward needs (nests; restores on exit)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous
