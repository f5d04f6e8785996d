"""``summary(model, input_shape)``: a table of every layer, computed from shapes alone.

For each leaf layer (in the order the forward pass visits them) the table
gives its output shape, its parameter count, the multiply-adds of its
forward pass and the memory its output takes; the totals follow.

Nothing is computed on data: each layer's output shape comes from its own
shape rule (the ones its ``forward`` uses), so the summary of the paper net
at batch 128 costs microseconds and allocates nothing. A model containing a
module without a known shape rule falls back to one real forward pass on
zeros (batch as given), with forward hooks recording the shapes.

Multiply-adds (MACs) count the products of the matrix multiplications only,
the convention of torchvision's model tables (0.71 GFLOPs for AlexNet):

* Conv2d: ``N * OC * OH * OW * (C/G) * KH * KW``
* Linear: ``N * OUT * IN``

Element-wise layers (ReLU, dropout, LRN, BatchNorm, pooling) cost a few
operations per element, shown as 0 here; their output memory is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .. import nn


@dataclass
class Row:
    """One leaf layer of the summary."""

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    activation_bytes: int


class _NoShapeRule(Exception):
    pass


def _leaf_output_shape(m, shape):
    """The output shape of leaf ``m`` for an input of ``shape`` (or raise _NoShapeRule)."""
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
        if len(shape) != 4:
            raise ValueError(f"{m!r} expects a 4-D input (N, C, H, W), got shape {shape}")
        if isinstance(m, nn.Conv2d) and shape[1] != m.in_channels:
            raise ValueError(f"{m!r} expects {m.in_channels} input channels, got shape {shape}")
        out = tuple(m.output_shape(shape))
        if min(out) < 1:
            raise ValueError(f"{m!r}: input of shape {shape} is too small (output {out})")
        return out
    if isinstance(m, nn.Linear):
        if shape[-1] != m.in_features:
            raise ValueError(f"{m!r} expects {m.in_features} input features, got shape {shape}")
        return tuple(shape[:-1]) + (m.out_features,)
    if isinstance(m, nn.Flatten):
        return tuple(m.forward_shape(shape))
    if isinstance(m, (nn.ReLU, nn.Dropout, nn.LocalResponseNorm, nn.BatchNorm2d)):
        return tuple(shape)
    raise _NoShapeRule(type(m).__name__)


def _macs(m, out_shape) -> int:
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return int(numpy.prod(out_shape, dtype=numpy.int64)) * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, nn.Linear):
        return int(numpy.prod(out_shape, dtype=numpy.int64)) * m.in_features
    return 0


def _own_params(m) -> int:
    return sum(int(p.size) for p in m._parameters.values())


def _ordered_children(m):
    """Children in forward order: Sequential order, or the model's ``_stages()``."""
    if isinstance(m, nn.Sequential):
        return list(m.named_children())
    if hasattr(m, "_stages"):
        names = {id(c): n for n, c in m.named_children()}
        return [(names[id(s)], s) for s in m._stages()]
    if not m._modules:
        return None
    raise _NoShapeRule(type(m).__name__)


def _walk(m, prefix, shape, rows, itemsize):
    children = _ordered_children(m)
    if children is None:   # a leaf
        out = _leaf_output_shape(m, shape)
        rows.append(Row(prefix or type(m).__name__, type(m).__name__, out, _own_params(m),
                        _macs(m, out), int(numpy.prod(out, dtype=numpy.int64)) * itemsize))
        return out
    for name, child in children:
        shape = _walk(child, f"{prefix}.{name}" if prefix else name, shape, rows, itemsize)
    return shape


def _rows_by_forward(model, shape, itemsize):
    """Fallback: one forward pass on zeros, shapes recorded by forward hooks on the leaves."""
    from .. import backend
    rows, handles = [], []
    for name, m in model.named_modules():
        if m._modules:
            continue

        def record(mod, _inp, out, name=name):
            rows.append(Row(name or type(mod).__name__, type(mod).__name__, tuple(out.shape),
                            _own_params(mod), _macs(mod, tuple(out.shape)), int(out.size) * itemsize))
        handles.append(m.register_forward_hook(record))
    was_training = model.training
    try:
        xp = backend.xp_for(model.device)
        model.eval()
        model(xp.zeros(shape, dtype=model.dtype))
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
    itemsize = numpy.dtype(model.dtype).itemsize
    rows: list[Row] = []
    try:
        _walk(model, "", shape, rows, itemsize)
    except _NoShapeRule:
        rows = _rows_by_forward(model, shape, itemsize)
    return rows


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"  # pragma: no cover


def summary(model, input_shape) -> str:
    """A table of every layer of ``model``: output shape, parameters, multiply-adds, activation memory.

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
    header = ("Layer", "Type", "Output shape", "Params", "Mult-adds", "Activations")
    body = [(r.name, r.kind, str(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
             _human_bytes(r.activation_bytes)) for r in rows]
    widths = [max(len(header[i]), *(len(b[i]) for b in body)) if body else len(header[i])
              for i in range(len(header))]
    align = ["<", "<", "<", ">", ">", ">"]

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    rule = "-" * len(line(header))
    macs = sum(r.macs for r in rows)
    act = sum(r.activation_bytes for r in rows)
    out = [f"{type(model).__name__} summary, input {shape}, {dtype.name}", rule, line(header), rule]
    out += [line(b) for b in body]
    out += [rule,
            f"Total params:       {total_params:,} ({_human_bytes(total_params * dtype.itemsize)})",
            (f"Mult-adds:          {macs:,} ({macs / 1e9:.3f} G) per forward pass of {shape[0]} "
             f"input{'s' if shape[0] != 1 else ''}"),
            f"Activation memory:  {_human_bytes(act)} (all layer outputs of one forward pass)",
            f"Input memory:       {_human_bytes(int(numpy.prod(shape)) * dtype.itemsize)}",
            rule]
    return "\n".join(out)
