"""Linear against torch."""

import numpy
import pytest
import torch

from npalexnet import nn
from npalexnet.gradcheck.torch_compare import check_against_torch


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype, bias, xp):
    x = numpy.random.default_rng(0).standard_normal((5, 7))
    check_against_torch(nn.Linear(7, 3, bias=bias), torch.nn.Linear(7, 3, bias=bias), x, xp=xp, dtype=dtype)


def test_linear_rejects_bad_input():
    lin = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="expected 4 channels"):
        lin(numpy.zeros((3, 5), dtype=numpy.float32))
    with pytest.raises(ValueError, match="2-D input"):
        lin(numpy.zeros((3, 4, 1), dtype=numpy.float32))
    with pytest.raises(TypeError, match="NumPy or CuPy array"):
        lin([[1.0, 2.0, 3.0, 4.0]])


def test_output_is_a_view_of_out_by_batch_memory_and_chains():
    """y = (W x^T)^T: an (N, OUT) view of (OUT, N) memory; a next layer, ReLU and backward take it."""
    rng = numpy.random.default_rng(1)
    first, second = nn.Linear(7, 5).astype("float64"), nn.Linear(5, 3).astype("float64")
    x = rng.standard_normal((4, 7))
    y = first(x)
    assert y.shape == (4, 5) and y.T.flags.c_contiguous
    relu = nn.ReLU()
    z = second(relu(y))
    assert relu(y).T.flags.c_contiguous, "ReLU keeps the layout"
    ref = [torch.nn.Linear(7, 5).double(), torch.nn.Linear(5, 3).double()]
    for ours, theirs in zip((first, second), ref):
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight.data))
            theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    xt = torch.from_numpy(x).requires_grad_()
    zt = ref[1](torch.relu(ref[0](xt)))
    numpy.testing.assert_allclose(z, zt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(z.shape)
    # The upstream gradient in either layout gives the same result.
    dx = first.backward(relu.backward(second.backward(numpy.asfortranarray(g))))
    zt.backward(torch.from_numpy(g))
    numpy.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(first.weight.grad, ref[0].weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(second.weight.grad, ref[1].weight.grad.numpy(), rtol=1e-12, atol=1e-12)
