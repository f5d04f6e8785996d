"""``trace_step``: one training step with every layer's signals recorded.

Forward hooks record what each layer received and produced; backward hooks
record the gradient that arrived from above (``grad_output``, the upstream
gradient dL/dy), the gradient the layer passed down (``grad_input``,
dL/dx) and the parameter gradients it accumulated (dL/dW, dL/db). The hooks
are the public ones of :class:`npalexnet.nn.Module`, registered for the step
and removed afterwards, so any model built from the library's layers can be
traced.

Example::

    trace = trace_step(model, x, y, nn.CrossEntropyLoss())
    print(trace.table())                 # shapes, activation statistics, gradient norms
    conv1 = trace["features.0"]
    conv1.input.shape, conv1.grad_output.shape, conv1.param_grads["weight"].shape
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from .. import backend, nn


@dataclass
class LayerRecord:
    """What one layer saw during the traced step (arrays on the model's device).

    Attributes:
        name: dotted module name (``features.0``), as in ``named_modules()``.
        kind: the layer's class name.
        module: the layer itself.
        input: the array its forward received, e.g. (N, C, H, W).
        output: the array its forward returned.
        grad_output: dL/d(output), same shape as ``output``.
        grad_input: dL/d(input), same shape as ``input``.
        param_grads: ``{"weight": dL/dW, "bias": dL/db}``: this step's gradients (copies).
        param_norms: ``{"weight": ||W||, ...}`` before the optimizer step (if any).
    """

    name: str
    kind: str
    module: object = field(repr=False)
    input: object = field(default=None, repr=False)
    output: object = field(default=None, repr=False)
    grad_output: object = field(default=None, repr=False)
    grad_input: object = field(default=None, repr=False)
    param_grads: dict = field(default_factory=dict, repr=False)
    param_norms: dict = field(default_factory=dict)


@dataclass
class Trace:
    """The records of one step, in forward order, plus the loss."""

    records: list
    loss: float
    logits: object = field(repr=False)
    grad_logits: object = field(repr=False)

    def __getitem__(self, name: str) -> LayerRecord:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"no layer named {name!r}; layers: {[r.name for r in self.records]}")

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def table(self) -> str:
        """Per layer: output shape, activation mean/std/zero fraction, gradient norms."""
        header = ("Layer", "Type", "Output shape", "mean", "std", "zeros", "|dL/dy|", "|dL/dx|",
                  "|dL/dW|", "|dL/dW|/|W|")
        rows = []
        for r in self.records:
            st = activation_stats(r.output)
            gw = r.param_grads.get("weight")
            w = r.param_norms.get("weight")
            gw_norm = norm(gw) if gw is not None else None
            rows.append((r.name, r.kind, str(tuple(r.output.shape)), f"{st['mean']:+.3e}",
                         f"{st['std']:.3e}", f"{st['zero_fraction']:.1%}",
                         _fmt(norm(r.grad_output)), _fmt(norm(r.grad_input)), _fmt(gw_norm),
                         _fmt(gw_norm / w if gw_norm is not None and w else None)))
        widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
        fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*header), "-" * (sum(widths) + 2 * (len(widths) - 1))]
        lines += [fmt.format(*row) for row in rows]
        lines.append(f"loss {self.loss:.6f}")
        return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3e}"


def norm(a) -> float:
    """Euclidean norm of any array, in float64, as a Python float."""
    a = backend.asnumpy(a).astype(numpy.float64)
    return float(numpy.sqrt(numpy.sum(a * a)))


def activation_stats(a) -> dict:
    """``{"mean", "std", "zero_fraction"}`` of an array (zeros: exactly 0, e.g. after ReLU)."""
    h = backend.asnumpy(a).astype(numpy.float64)
    return {"mean": float(h.mean()), "std": float(h.std()),
            "zero_fraction": float(numpy.mean(h == 0)) if h.size else 0.0}


def parameter_norms(model) -> dict:
    """``{name: {"grad": |dL/dθ|, "weight": |θ|}}`` for every parameter (grad None before a backward).

    For logging per-layer gradient and weight norms during training (e.g.
    once per epoch into the metrics file): vanishing or exploding gradients
    show up here first.
    """
    return {name: {"grad": None if p.grad is None else norm(p.grad), "weight": norm(p.data)}
            for name, p in model.named_parameters()}


def _copy(a):
    return None if a is None else backend.get_array_module(a).array(a, copy=True)


def trace_step(model, x, targets, criterion=None, optimizer=None, *, leaves_only: bool = True) -> Trace:
    """Run forward, loss, backward (and ``optimizer.step()`` if given), recording every layer.

    Inputs:
        model: an npalexnet Module (its mode is left as it is: ``train()`` for a training step).
        x: input batch, e.g. (N, C, H, W), on the model's device and dtype.
        targets: (N,) integer labels.
        criterion: the loss (default ``nn.CrossEntropyLoss()``).
        optimizer: stepped after the backward pass when given.
        leaves_only: record layers only (default), or containers too.
    Returns:
        A :class:`Trace`: ``trace.records`` in forward order, ``trace.loss``,
        ``trace.logits``, ``trace.grad_logits``.

    Gradients are zeroed first, so ``param_grads`` are this step's alone.
    """
    criterion = criterion or nn.CrossEntropyLoss()
    records: dict[int, LayerRecord] = {}
    order: list[LayerRecord] = []
    handles = []

    for name, m in model.named_modules():
        if leaves_only and any(True for _ in m.children()):
            continue
        rec = LayerRecord(name or type(m).__name__, type(m).__name__, m)
        records[id(m)] = rec

        def on_forward(mod, inp, out, rec=rec):
            rec.input, rec.output = inp, out
            order.append(rec)

        def on_backward(mod, grad_in, grad_out, rec=rec):
            rec.grad_input, rec.grad_output = grad_in, grad_out
            rec.param_grads = {n: _copy(p.grad) for n, p in mod.named_parameters(recurse=False)}

        handles.append(m.register_forward_hook(on_forward))
        handles.append(m.register_full_backward_hook(on_backward))
    try:
        model.zero_grad()
        logits = model(x)
        loss = criterion(logits, targets)
        grad_logits = criterion.backward()
        model.backward(grad_logits)
        for rec in order:
            rec.param_norms = {n: norm(p.data) for n, p in rec.module.named_parameters(recurse=False)}
        if optimizer is not None:
            optimizer.step()
    finally:
        for h in handles:
            h.remove()
    return Trace(order, float(loss), logits, grad_logits)
