"""Instruments for studying backpropagation: summaries, traces, study batches.

* :func:`summary` (also ``Module.summary``; :mod:`npalexnet.nn.summary`):
  per-layer output shapes, parameters, multiply-adds, activation memory and
  the implementation that runs each layer.
* :func:`trace_step`: one training step with every layer's input, output,
  upstream gradient and parameter gradients recorded through the hooks;
  :func:`parameter_norms` for logging gradient and weight norms.
* :mod:`npalexnet.inspect.batch`: a CIFAR-10 batch for the study examples,
  read through :mod:`npalexnet.data` (random images, said so, when there is none).

The checks themselves (finite differences, the comparison with PyTorch, the
torch twin, the ``python -m npalexnet.gradcheck`` table) are one floor lower,
in :mod:`npalexnet.gradcheck`.
"""

from ..nn.summary import summary
from .trace import LayerRecord, Trace, parameter_norms, trace_step

__all__ = ["LayerRecord", "Trace", "parameter_norms", "summary", "trace_step"]
