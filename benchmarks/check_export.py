"""A trained checkpoint exported both ways, run elsewhere: onnxruntime and PyTorch against npalexnet.

Exports CHECKPOINT to ONNX and safetensors (``python -m npalexnet.export``'s
code), prepares test images exactly as the run's evaluation does (the
checkpoint's normalisation and input size), and feeds the same tensors to

* npalexnet (the checkpoint's model, evaluation mode),
* onnxruntime (the ``.onnx`` file, CPU),
* PyTorch: ``torchvision.models.alexnet`` for the ``torchvision`` variant,
  else a torch module of the same layers
  (:func:`npalexnet.gradcheck.torch_twin.to_torch` of a freshly initialised
  model), loaded with ``load_state_dict`` from the ``.safetensors`` file.

Prints, for each runtime, the largest absolute and relative logit difference
from npalexnet, the top-1 agreement with npalexnet and the accuracy.

    python benchmarks/check_export.py runs/cifar10/latest/last.npz --data-dir ../shared/data/cifar10 [--images 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npalexnet import manual_seed, nn
from npalexnet.data import load_dataset, stratified_sample
from npalexnet.export import export_checkpoint, run_onnxruntime
from npalexnet.train import Predictor, build_model, load_checkpoint


def torch_logits(meta, safetensors_path, images):
    import torch
    from safetensors.torch import load_file

    kwargs = meta["model_kwargs"]
    if kwargs["variant"] == "torchvision":
        import torchvision
        module = torchvision.models.alexnet(num_classes=kwargs["num_classes"], dropout=kwargs.get("dropout", 0.5))
    else:
        from npalexnet.gradcheck.torch_twin import to_torch
        manual_seed(12345)   # other weights than the checkpoint's, until the file is loaded
        module = to_torch(build_model(kwargs), replay_dropout=False)
    module.load_state_dict(load_file(str(safetensors_path)))
    with torch.no_grad():
        return module.eval()(torch.from_numpy(images)).numpy()


def compare(name, logits, reference, labels):
    absolute = numpy.abs(logits - reference).max()
    relative = absolute / numpy.abs(reference).max()
    agree = (logits.argmax(1) == reference.argmax(1)).mean()
    accuracy = (logits.argmax(1) == labels).mean()
    print(f"{name:12s} max |logit diff| {absolute:.3e} (relative to max |logit| {relative:.1e}) | "
          f"top-1 agreement {100 * agree:.1f}% | accuracy {100 * accuracy:.1f}%")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", required=True, help="the run's data (the test split is used)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--images", type=int, default=500, help="test images (a stratified, seeded sample)")
    p.add_argument("--out", default=None, help="where the exported files go (default: a temporary folder)")
    args = p.parse_args(argv)

    meta = load_checkpoint(args.checkpoint).meta
    dataset = load_dataset(args.dataset, args.data_dir, download=False, image_size=meta.get("image_size"))
    chosen = stratified_sample(dataset.test.labels, args.images, seed=0)
    predictor = Predictor.from_checkpoint(args.checkpoint, tta=False)
    images = numpy.asarray(predictor.preprocess.eval(dataset.test.images[chosen]), dtype=numpy.float32)
    labels = dataset.test.labels[chosen]

    out = Path(args.out or tempfile.mkdtemp(prefix="npalexnet-export-"))
    model, onnx_path, _ = export_checkpoint(args.checkpoint, out / "model.onnx")
    _, safetensors_path, _ = export_checkpoint(args.checkpoint, out / "model.safetensors")
    with nn.no_grad():
        reference = numpy.asarray(model(images))
    print(f"{args.checkpoint}: AlexNet {meta['model_kwargs']['variant']}, {len(images)} test images "
          f"{tuple(images.shape[1:])}; files in {out} ({onnx_path.stat().st_size / 1e6:.1f} MB ONNX, "
          f"{safetensors_path.stat().st_size / 1e6:.1f} MB safetensors)")
    compare("onnxruntime", run_onnxruntime(onnx_path, images), reference, labels)
    compare("torch", torch_logits(meta, safetensors_path, images), reference, labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
