"""The seam: faster implementations of the layers' math, chosen in one place.

Every layer in :mod:`npalexnet.nn` is its own reference: its ``forward`` and
``backprop`` are the formula in array code, and they are what runs unless a
faster implementation of the *same* function applies. A layer that has such
implementations names its seam (``Conv2d.seam = "conv2d"``); this package
holds them, and :func:`choose` is the one place that decides which runs, from
the layer, its input and the settings in force (:mod:`npalexnet.config`):

============  ===============================================================  =======================
seam          implementations (first that applies wins)                        setting
============  ===============================================================  =======================
conv2d        Winograd F(m x m, r x r) (3x3, 5x5 stride 1; numba transforms    conv; cuda_kernels;
              on the CPU); im2col with the CUDA kernels (CuPy); im2col with    numba
              numba im2col/col2im (NumPy)
max_pool2d    CUDA kernels; numba kernels                                      cuda_kernels; numba
lrn           CUDA kernels; numba kernels                                      cuda_kernels; numba
relu          CUDA kernel; numba one-pass kernel                                cuda_kernels; numba
dropout       CUDA: the mask drawn and applied in one pass                      cuda_kernels
linear        y^T = W x^T into recycled memory (NumPy; OpenBLAS's fast order)  fast_paths
sgd           CUDA fused update (CuPy); numba fused update (NumPy)              cuda_kernels; numba
============  ===============================================================  =======================

``config.reference()`` (``fast_paths=False``) turns them all off.
:func:`describe` says, without running anything, what runs for a layer and
an input shape; ``Module.summary`` and the training program print it.

The contract of an implementation (:class:`Implementation`): the same
function as the reference, on the same inputs, to float rounding (the
conformance suite, tests/kernels/test_conformance.py, holds every one to its
layer's reference on every layout, dtype and device it claims). Arrays cross
the seam as logical (N, C, H, W) (or (N, F)) arrays in any memory layout;
the fast paths prefer and produce (C, N, H, W) memory (the layout a
convolution's GEMM writes, and the next im2col reads without a copy), and
take their large arrays from :mod:`.memory`. What an implementation's
forward keeps for its backward is its own (``state``), never the layer's.
"""

from .seam import Implementation, Probe, choose, describe, implementations, on_cpu_float, on_gpu, register

# The implementations register themselves on import, and the order of these imports is the order in
# which choose() tries them: Winograd first (it applies only to the layers it is asked for or chosen
# for), then the CUDA kernels (CuPy arrays, when switched on), then the numba kernels (NumPy arrays).
from . import winograd, cuda_layers, cpu_layers  # noqa: E402,F401,I001  (registration)

__all__ = ["Implementation", "Probe", "choose", "describe", "implementations", "on_cpu_float", "on_gpu",
           "register"]
