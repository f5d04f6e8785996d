"""``summary(model, input_shape)``: a table of every layer, computed from shapes alone.

For each leaf layer (in the order the forward pass visits them) the table
gives its output shape, its parameter count, the multiply-adds of its
forward pass, the memory its output takes and the implementation that runs
it on the model's device under the settings in force
(:func:`npalexnet.kernels.describe`); the totals follow.

Nothing is computed on data: every layer answers for itself through the
per-layer protocol of :class:`~npalexnet.nn.Module` (``output_shape``,
``multiply_adds``), and a :class:`~npalexnet.nn.Sequential` walks its
children in order, so the summary of the paper net at batch 128 costs
microseconds and allocates nothing. A container that is not a Sequential
falls back to one real forward pass on zeros (batch as given), with forward
hooks recording the shapes.

Multiply-adds (MACs) count the products of the matrix multiplications only,
the convention of torchvision's model tables (0.71 GFLOPs for AlexNet):
Conv2d ``N * OC * OH * OW * (C/G) * KH * KW``, Linear ``N * OUT * IN``.
Element-wise layers (ReLU, dropout, LRN, BatchNorm, pooling) cost a few
operations per element, shown as 0 here; their output memory is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .. import backend, kernels
from .module import Module, Sequential


@dataclass
class Row:
    """One leaf layer of the summary."""

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    activation_bytes: int
    implementation: str = "reference"


def _row(m: Module, name: str, in_shape, out_shape, dtype, device) -> Row:
    itemsize = numpy.dtype(dtype).itemsize
    return Row(name or type(m).__name__, type(m).__name__, tuple(out_shape),
               sum(int(p.size) for p in m.parameters(recurse=False)), int(m.multiply_adds(in_shape)),
               int(numpy.prod(out_shape, dtype=numpy.int64)) * itemsize,
               kernels.describe(m, in_shape, dtype, device))


def _walk(m: Module, prefix: str, shape, rows: list, dtype, device):
    if isinstance(m, Sequential):
        for name, child in m.named_children():
            shape = _walk(child, f"{prefix}.{name}" if prefix else name, shape, rows, dtype, device)
        return shape
    if any(True for _ in m.children()):
        raise _NoShapeRule(type(m).__name__)
    m.check_input(kernels.Probe(shape, dtype, device))   # the layer's own message for a shape it cannot take
    try:
        out = tuple(m.output_shape(shape))
    except NotImplementedError:
        raise _NoShapeRule(type(m).__name__) from None
    if len(out) and min(out) < 1:
        raise ValueError(f"{m!r}: input of shape {shape} is too small (output {out})")
    rows.append(_row(m, prefix, shape, out, dtype, device))
    return out


class _NoShapeRule(Exception):
    pass


def _rows_by_forward(model, shape, dtype, device):
    """Fallback: one forward pass on zeros, shapes recorded by forward hooks on the leaves."""
    rows, handles = [], []
    for name, m in model.named_modules():
        if any(True for _ in m.children()):
            continue

        def record(mod, inp, out, name=name):
            rows.append(_row(mod, name, tuple(inp.shape), tuple(out.shape), dtype, device))
        handles.append(m.register_forward_hook(record))
    was_training = model.training
    try:
        xp = backend.xp_for(device)
        model.eval()
        model(xp.zeros(shape, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def layer_rows(model, input_shape) -> list[Row]:
    """The summary rows of ``model`` for ``input_shape`` ((N, C, H, W) or (C, H, W))."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    dtype, device = numpy.dtype(model.dtype), model.device
    rows: list[Row] = []
    try:
        _walk(model, "", shape, rows, dtype, device)
    except _NoShapeRule:
        rows = _rows_by_forward(model, shape, dtype, device)
    return rows


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"  # pragma: no cover


def summary(model, input_shape) -> str:
    """A table of every layer of ``model``: output shape, parameters, multiply-adds, activation memory,
    and the implementation that runs it (on the model's device, under the settings in force).

    Inputs:
        model: an npalexnet Module.
        input_shape: (N, C, H, W), or (C, H, W) for a batch of one.
    Returns:
        The table as a string (print it). Totals: parameters (all of the
        model's, trainable), their memory, multiply-adds of one forward pass,
        and the memory of all layer outputs of one forward pass (roughly what
        training keeps for the backward pass).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    rows = layer_rows(model, shape)
    total_params = sum(int(p.size) for p in model.parameters())
    dtype = numpy.dtype(model.dtype)
    header = ("Layer", "Type", "Output shape", "Params", "Mult-adds", "Activations", "Runs as")
    body = [(r.name, r.kind, str(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
             _human_bytes(r.activation_bytes), r.implementation) for r in rows]
    widths = [max(len(header[i]), *(len(b[i]) for b in body)) if body else len(header[i])
              for i in range(len(header))]
    align = ["<", "<", "<", ">", ">", ">", "<"]

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    rule = "-" * len(line(header))
    macs = sum(r.macs for r in rows)
    act = sum(r.activation_bytes for r in rows)
    out = [f"{type(model).__name__} summary, input {shape}, {dtype.name}, {model.device}", rule, line(header), rule]
    out += [line(b) for b in body]
    out += [rule,
            f"Total params:       {total_params:,} ({_human_bytes(total_params * dtype.itemsize)})",
            (f"Mult-adds:          {macs:,} ({macs / 1e9:.3f} G) per forward pass of {shape[0]} "
             f"input{'s' if shape[0] != 1 else ''}"),
            f"Activation memory:  {_human_bytes(act)} (all layer outputs of one forward pass)",
            f"Input memory:       {_human_bytes(int(numpy.prod(shape)) * dtype.itemsize)}",
            rule]
    return "\n".join(out)
