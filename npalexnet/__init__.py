"""npalexnet: AlexNet with every forward and backward pass written by hand.

NumPy on the CPU, CuPy on an NVIDIA GPU, one source; every gradient checked
against PyTorch's autograd in the test suite.
"""

from . import backend, config, nn
from .backend import asnumpy, cupy_available, get_device, resolve_device, set_device
from .nn import no_grad
from .random_streams import manual_seed

__version__ = "0.1.0"

__all__ = ["asnumpy", "backend", "config", "cupy_available", "get_device", "manual_seed", "nn", "no_grad",
           "resolve_device", "set_device", "__version__"]
