"""Compute kernels behind the layers: array code, with faster versions swapped in."""

from .cuda_dispatch import cuda_enabled, use_cuda_kernels  # noqa: F401  (CUDA kernels: off by default)
