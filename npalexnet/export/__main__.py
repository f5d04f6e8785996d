"""``python -m npalexnet.export CHECKPOINT OUT``: a training checkpoint as ONNX or safetensors.

    python -m npalexnet.export runs/cifar10/latest/best.npz alexnet.onnx          # ONNX opset 17, onnx.checker-checked
    python -m npalexnet.export runs/cifar10/latest/best.npz alexnet.safetensors   # torch-named weights
    python -m npalexnet.export best.npz model.bin --format safetensors     # format not from the suffix

Any error (missing checkpoint, unknown format, missing package) is one line
on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy

from .. import nn
from ..train.checkpoint import CheckpointError
from . import FORMATS, OPSET, ExportError, export_checkpoint, format_for, run_onnxruntime


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m npalexnet.export",
                                description="Export an npalexnet training checkpoint as ONNX or safetensors.",
                                epilog="examples:\n" + __doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a training checkpoint (.npz), e.g. runs/cifar10/latest/best.npz")
    p.add_argument("out", help="the file to write: .onnx or .safetensors")
    p.add_argument("--format", choices=sorted(set(FORMATS.values())), default=None,
                   help="the format (default: from OUT's suffix)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset version (default: {OPSET})")
    p.add_argument("--check", action="store_true",
                   help="ONNX: run the file in onnxruntime on 8 random images and print the largest logit "
                        "difference from npalexnet")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        fmt = format_for(args.out, args.format)
        model, path, metadata = export_checkpoint(args.checkpoint, args.out, fmt, args.opset)
        kwargs = json.loads(metadata["model_kwargs"])
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): AlexNet {kwargs['variant']}, "
              f"{kwargs['num_classes']} classes")
        if args.check and fmt == "onnx":
            size = json.loads(metadata["input_size"])
            images = numpy.random.default_rng(0).standard_normal(
                (8, int(kwargs.get("in_channels", 3)), size, size)).astype(numpy.float32)
            with nn.no_grad():
                expected = numpy.asarray(model(images))
            difference = numpy.abs(run_onnxruntime(path, images) - expected).max()
            print(f"check: onnxruntime vs npalexnet on 8 random images: largest logit difference {difference:.2e}")
    except (CheckpointError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
