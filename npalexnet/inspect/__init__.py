"""Instruments for studying backpropagation: summaries, traces, gradient-check reports.

* :func:`summary` (also ``Module.summary``; :mod:`npalexnet.nn.summary`):
  per-layer output shapes, parameters, multiply-adds, activation memory and
  the implementation that runs each layer.
* :func:`trace_step`: one training step with every layer's input, output,
  upstream gradient and parameter gradients recorded through the hooks;
  :func:`parameter_norms` for logging gradient and weight norms.
* :mod:`npalexnet.inspect.torch_twin`: the same network in PyTorch, for
  comparing every gradient with autograd.
* :mod:`npalexnet.inspect.gradcheck_report`: the table that
  ``python -m npalexnet.gradcheck`` prints.
"""

from ..nn.summary import summary
from .trace import LayerRecord, Trace, parameter_norms, trace_step

__all__ = ["LayerRecord", "Trace", "parameter_norms", "summary", "trace_step"]
