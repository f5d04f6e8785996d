"""Take trained weights elsewhere: ONNX graphs and safetensors files.

* :func:`export_checkpoint` (``python -m npalexnet.export CHECKPOINT OUT``):
  a training checkpoint to ``OUT.onnx`` or ``OUT.safetensors``;
* :func:`~npalexnet.export.onnx.export_onnx`: any chain of npalexnet layers
  as an ONNX graph (no torch involved), one converter per layer type;
* :func:`~npalexnet.export.safetensors.export_safetensors`: the
  ``state_dict`` under torch's names, loadable into ``torchvision.models.alexnet``;
* :mod:`.metadata`: the model arguments, class names and normalisation both
  formats carry.

The ``onnx`` and ``safetensors`` packages are imported when used
(``pip install "npalexnet[export]"``).
"""

from __future__ import annotations

from pathlib import Path

from .errors import ExportError
from .metadata import checkpoint_metadata, export_metadata, read_metadata
from .onnx import CONVERTERS, OPSET, converter, export_onnx, run_onnxruntime
from .safetensors import export_safetensors

#: file suffix -> format
FORMATS = {".onnx": "onnx", ".safetensors": "safetensors"}


def format_for(path, format: str | None = None) -> str:
    """``format`` if given, else the one named by ``path``'s suffix; ExportError when neither says."""
    if format is not None:
        if format not in FORMATS.values():
            raise ExportError(f"unknown export format {format!r}: expected one of {', '.join(FORMATS.values())}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"cannot tell the format of {path} from its suffix {suffix or '(none)'!r}: use "
                          f"{' or '.join(FORMATS)}, or --format {'|'.join(FORMATS.values())}")
    return FORMATS[suffix]


def export_checkpoint(checkpoint, out, format: str | None = None, opset: int = OPSET):
    """Export the model of a training checkpoint to ``out``.

    Returns:
        ``(model, path, metadata)``: the npalexnet model (CPU, evaluation
        mode, the checkpoint's weights), the file written, its metadata table.
    Raises:
        CheckpointError: a missing or unreadable checkpoint. ExportError: an
        unknown format, a missing package, a model that cannot be exported.
    """
    from ..train.checkpoint import CheckpointError, load_checkpoint, load_model_state
    from ..train.config import build_model, input_size

    fmt = format_for(out, format)
    ckpt = load_checkpoint(checkpoint)
    if "model_kwargs" not in ckpt.meta:
        raise CheckpointError(f"{ckpt.path} lacks the model arguments (model_kwargs): not a training checkpoint")
    kwargs = ckpt.meta["model_kwargs"]
    model = build_model(kwargs)
    load_model_state(model, ckpt, averaged=True)   # the weights the run scored: the moving average, if kept
    model.eval()
    size = int(ckpt.meta.get("input_size") or input_size(kwargs["variant"]))
    metadata = checkpoint_metadata({**ckpt.meta, "input_size": size})
    if fmt == "onnx":
        path = export_onnx(model, out, (int(kwargs.get("in_channels", 3)), size, size), metadata, opset)
    else:
        path = export_safetensors(model, out, metadata)
    return model, path, metadata


__all__ = ["CONVERTERS", "FORMATS", "OPSET", "ExportError", "checkpoint_metadata", "converter", "export_checkpoint",
           "export_metadata", "export_onnx", "export_safetensors", "format_for", "read_metadata", "run_onnxruntime"]
