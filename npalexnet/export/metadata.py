"""What travels with exported weights: the model's arguments, class names, preprocessing.

Both formats carry the same string-to-string table (ONNX ``metadata_props``,
the safetensors header's ``__metadata__``); every value is a JSON string, so
a reader in any language gets lists and numbers back with one ``json.loads``:

* ``npalexnet_version``: the version that wrote the file;
* ``variant``: ``"paper"``, ``"torchvision"``, ``"cifar"`` or ``"bn"``;
* ``model_kwargs``: the keyword arguments of :func:`npalexnet.models.alexnet`
  (``variant``, ``num_classes``, ``in_channels``, ``width``, ``lrn``, ...);
* ``classes``: the class names, index = logit position;
* ``mean``, ``std``: per-channel normalisation of images scaled to [0, 1]:
  the network's input is ``(image / 255 - mean) / std``;
* ``input_size``: the network's input height = width (227, 224 or 32);
* ``image_size``, ``resize_mode``: how the training images were prepared
  (decoded at ``image_size``, then resized to ``input_size``), when known.
"""

from __future__ import annotations

import json

from .. import __version__


def export_metadata(model_kwargs: dict, *, classes=None, mean=None, std=None, input_size=None,
                    image_size=None, resize_mode=None) -> dict[str, str]:
    """The metadata table: each given value as a JSON string (absent ones are left out)."""
    values = {"npalexnet_version": __version__, "variant": model_kwargs.get("variant"),
              "model_kwargs": dict(model_kwargs), "classes": None if classes is None else list(classes),
              "mean": None if mean is None else [float(m) for m in mean],
              "std": None if std is None else [float(s) for s in std],
              "input_size": input_size, "image_size": image_size, "resize_mode": resize_mode}
    return {key: json.dumps(value) for key, value in values.items() if value is not None}


def checkpoint_metadata(meta: dict) -> dict[str, str]:
    """The metadata table of a training checkpoint's ``meta``."""
    return export_metadata(meta["model_kwargs"], classes=meta.get("classes"), mean=meta.get("mean"),
                           std=meta.get("std"), input_size=meta.get("input_size"),
                           image_size=meta.get("image_size"), resize_mode=meta.get("resize_mode"))


def read_metadata(table: dict[str, str]) -> dict:
    """The table back as Python values (for the files this module's tables went into)."""
    return {key: json.loads(value) for key, value in table.items()}
