"""An npalexnet model's weights as a ``.safetensors`` file, under torch's parameter names.

The tensors are the model's ``state_dict()`` (parameters and buffers, e.g.
BatchNorm's running statistics), whose names are torch's for the same
architecture, so the file loads with ``torch_module.load_state_dict(
safetensors.torch.load_file(path))`` into ``torchvision.models.alexnet``
(the ``torchvision`` variant) or a torch module of the same layers (the
others; :func:`npalexnet.gradcheck.torch_twin.to_torch` builds one). The
header's ``__metadata__`` holds the table of :mod:`.metadata` (model
arguments, class names, normalisation, the npalexnet version).

Written with the ``safetensors`` package's NumPy API, atomically (temporary
file, fsync, rename), so an interrupted export never leaves half a file.
"""

from __future__ import annotations

import numpy

from .. import backend, nn
from .errors import ExportError


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as exc:
        raise ExportError("safetensors export needs the safetensors package: "
                          "pip install \"npalexnet[export]\"") from exc
    return safetensors.numpy


def export_safetensors(model: nn.Module, path, metadata: dict[str, str] | None = None):
    """Write ``model.state_dict()`` and ``metadata`` to ``path``; returns the path.

    The tensors keep their dtypes (float32 weights, BatchNorm's int64
    ``num_batches_tracked``), copied to the host.
    """
    from ..data.atomic import atomic_write

    # order="C" rather than ascontiguousarray, which turns 0-d arrays (num_batches_tracked) into shape (1,)
    tensors = {name: numpy.asarray(backend.asnumpy(value), order="C") for name, value in model.state_dict().items()}
    data = _safetensors_numpy().save(tensors, metadata=dict(metadata or {}))
    return atomic_write(path, lambda f: f.write(data))

