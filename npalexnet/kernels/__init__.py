"""Compute kernels behind the layers: array code, with faster versions swapped in."""
