"""Gradient checking: finite differences, the comparison with PyTorch, and the report that runs both.

* :mod:`.finite_differences`: numerical gradients, directional checks,
  ``relative_error``, ``unit_roundoff``, ``gamma`` (NumPy only; imported here).
* :mod:`.torch_compare`: ``check_against_torch`` and the one tolerance table
  ``TOLERANCES`` of every comparison with PyTorch (imports torch; import it
  where torch is wanted, nothing on the library's main path does).
* :mod:`.torch_twin`: ``to_torch(model)``, the same network in ``torch.nn``
  (imports torch).
* :mod:`.report`: the table of ``python -m npalexnet.gradcheck``.

Floor: gradcheck sits beside models and optim (it imports nn, models, backend,
config and random_streams, never data, distributed, inspect or train).
"""

from .finite_differences import (
    STEP,
    TOLERANCE,
    TOLERANCE_NETWORK,
    DirectionalCheck,
    along_directions,
    central_difference,
    check_module,
    gamma,
    numerical_gradient,
    relative_error,
    shifted,
    tie_free,
    unit_roundoff,
)

__all__ = [
    "STEP",
    "TOLERANCE",
    "TOLERANCE_NETWORK",
    "DirectionalCheck",
    "along_directions",
    "central_difference",
    "check_module",
    "gamma",
    "numerical_gradient",
    "relative_error",
    "shifted",
    "tie_free",
    "unit_roundoff",
]
