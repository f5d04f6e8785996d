"""CrossEntropyLoss against torch: values, gradients, smoothing, class probabilities, huge logits, bad targets."""

import numpy
import pytest
import torch

import npalexnet
from npalexnet import nn
from npalexnet.gradcheck import relative_error
from npalexnet.gradcheck.torch_compare import check_against_torch


def run_both(logits, targets, smoothing=0.0, reduction="mean", xp=numpy):
    crit = nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction)
    loss = crit(xp.asarray(logits), xp.asarray(targets))
    grad = crit.backward()
    tl = torch.tensor(logits, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tl, torch.tensor(targets), label_smoothing=smoothing,
                                              reduction=reduction)
    tloss.backward()
    return loss, grad, tloss.detach().numpy(), tl.grad.numpy()


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch(smoothing, reduction, dtype, xp):
    rng = numpy.random.default_rng(0)
    logits = 3 * rng.standard_normal((6, 10))
    targets = rng.integers(0, 10, 6)
    comparison = check_against_torch(nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction),
                                     torch.nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction),
                                     logits, xp=xp, dtype=dtype, targets=targets)   # a random scalar upstream
    assert list(comparison.errors) == ["output", "input"]
    loss = nn.CrossEntropyLoss(reduction=reduction)(xp.asarray(logits.astype(dtype)), xp.asarray(targets))
    assert loss.shape == () and loss.dtype == dtype


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("rows", ["distributions", "any weights"])
def test_cross_entropy_with_class_probabilities_matches_torch(rows, smoothing, reduction, dtype, xp):
    """Soft targets (N, K) as torch takes them; rows that do not sum to one too, where the gradient is
    p * sum(q) - q and not the familiar p - q."""
    rng = numpy.random.default_rng(1)
    logits = 3 * rng.standard_normal((6, 10))
    targets = rng.random((6, 10))
    if rows == "distributions":
        targets /= targets.sum(axis=1, keepdims=True)
    comparison = check_against_torch(nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction),
                                     torch.nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction),
                                     logits, xp=xp, dtype=dtype, targets=targets)
    assert list(comparison.errors) == ["output", "input"]


def test_one_hot_probabilities_are_the_class_indices(xp):
    rng = numpy.random.default_rng(2)
    logits = xp.asarray(rng.standard_normal((5, 4)))
    labels = rng.integers(0, 4, 5)
    by_index, by_probability = nn.CrossEntropyLoss(0.1), nn.CrossEntropyLoss(0.1)
    one_hot = numpy.eye(4)[labels]
    numpy.testing.assert_allclose(npalexnet.asnumpy(by_probability(logits, xp.asarray(one_hot))),
                                  npalexnet.asnumpy(by_index(logits, xp.asarray(labels))), rtol=1e-14)
    numpy.testing.assert_allclose(npalexnet.asnumpy(by_probability.backward()),
                                  npalexnet.asnumpy(by_index.backward()), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_cross_entropy_is_finite_for_huge_logits(scale, xp):
    rng = numpy.random.default_rng(0)
    logits = (scale * rng.standard_normal((4, 5))).astype(numpy.float32)
    targets = numpy.array([0, 1, 2, 3])
    loss, grad, tloss, tgrad = run_both(logits, targets, 0.1, xp=xp)
    assert numpy.isfinite(float(loss)) and numpy.isfinite(npalexnet.asnumpy(grad)).all()
    assert relative_error(loss, tloss) < 1e-5
    assert relative_error(grad, tgrad) < 1e-5


def test_cross_entropy_gradient_scales_with_upstream():
    crit = nn.CrossEntropyLoss()
    logits = numpy.random.default_rng(0).standard_normal((3, 4))
    crit(logits, numpy.array([0, 1, 2]))
    g1 = crit.backward()
    crit(logits, numpy.array([0, 1, 2]))
    numpy.testing.assert_allclose(crit.backward(2.5), 2.5 * g1)


@pytest.mark.parametrize("targets, error, message", [
    (numpy.array([0, 1, 5]), ValueError, r"in \[0, 5\)"),
    (numpy.array([0, -1, 2]), ValueError, r"in \[0, 5\)"),
    (numpy.array([0, 1]), ValueError, r"shape \(3,\)"),
    (numpy.array([[0, 1, 2]]), ValueError, r"shape \(3,\)"),
    (numpy.array([0.0, 1.0, 2.0]), TypeError, "integer class indices"),
    (numpy.zeros((3, 4)), ValueError, r"or \(3, 5\) \(class probabilities\)"),
    (numpy.zeros((3, 5), numpy.float32), TypeError, "the logits' dtype float64"),
    (numpy.zeros((3, 5), numpy.int64), TypeError, "the logits' dtype float64"),
])
def test_cross_entropy_rejects_bad_targets(targets, error, message):
    with pytest.raises(error, match=message):
        nn.CrossEntropyLoss()(numpy.zeros((3, 5)), targets)


def test_unchecked_targets_skip_only_the_range_check(xp):
    """check_targets=False (the training program, whose labels the dataset checked once): the same values
    and gradients, no range check (on a GPU: no wait for the device), the other checks still made."""
    logits = numpy.random.default_rng(3).standard_normal((4, 5))
    targets = numpy.array([4, 0, 2, 2])
    checked, unchecked = nn.CrossEntropyLoss(0.1), nn.CrossEntropyLoss(0.1, check_targets=False)
    assert "check_targets=False" in repr(unchecked) and "check_targets" not in repr(checked)
    numpy.testing.assert_array_equal(npalexnet.asnumpy(unchecked(xp.asarray(logits), xp.asarray(targets))),
                                     npalexnet.asnumpy(checked(xp.asarray(logits), xp.asarray(targets))))
    numpy.testing.assert_array_equal(npalexnet.asnumpy(unchecked.backward()), npalexnet.asnumpy(checked.backward()))
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        checked(xp.asarray(logits), xp.asarray(numpy.array([0, 1, 2, 5])))
    with pytest.raises(TypeError, match="integer class indices"):
        unchecked(xp.asarray(logits), xp.asarray(numpy.zeros(4)))


def test_cross_entropy_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.CrossEntropyLoss().backward()
