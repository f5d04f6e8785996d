"""train_step: the one training step, in one process and as one rank of many."""

import numpy
import pytest

import npalexnet
from npalexnet import config, nn, optim, random_streams
from npalexnet.distributed import DataParallel, SingleProcessCommunicator
from npalexnet.models import alexnet
from npalexnet.train import NonFiniteLossError, train_step


def _setup():
    npalexnet.manual_seed(0)
    model = alexnet("cifar", width=0.125).astype(numpy.float64)
    return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _one_process(model):
    return DataParallel(model, SingleProcessCommunicator())


def _manual_step(x, targets, idx, seed, epoch, before_update=None):
    """The step written out: forward and loss with the images' dropout keys, backward, (``before_update``
    on the model,) SGD's update. Returns the model and the mean loss."""
    ref, ref_opt = _setup()
    loss_fn = nn.CrossEntropyLoss()
    with random_streams.sample_keys(idx, seed, epoch):
        loss = loss_fn(ref(x), targets)
    ref_opt.zero_grad()
    ref.backward(loss_fn.backward())
    if before_update is not None:
        before_update(ref)
    ref_opt.step()
    return ref, float(loss)


def test_train_step_is_the_manual_step_with_keyed_dropout():
    rng = numpy.random.default_rng(0)
    x, y, idx = rng.standard_normal((6, 3, 32, 32)), rng.integers(0, 10, 6), numpy.arange(10, 16)
    model, opt = _setup()
    loss_sum, correct, count = train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=5, epoch=2,
                                          parallel=_one_process(model))
    ref, loss = _manual_step(x, y, idx, 5, 2)
    assert loss_sum == loss * 6 and 0 <= correct <= 6 and count == 6
    for a, b in zip(model.parameters(), ref.parameters()):
        numpy.testing.assert_array_equal(a.data, b.data)


def test_class_probability_targets_train_and_count_the_larger_share_as_the_label():
    """Mixup's and CutMix's (B, K) targets: the step is the manual step on them, and a prediction is correct
    when it names the class with the larger share of its row."""
    rng = numpy.random.default_rng(2)
    x, idx = rng.standard_normal((6, 3, 32, 32)), numpy.arange(6)
    model, opt = _setup()
    with random_streams.sample_keys(idx, 1, 0):
        predicted = numpy.argmax(model(x), axis=1)
    other = (predicted + 1) % 10
    # the prediction is the larger share in rows 0-3 and the smaller one in rows 4-5
    labels, partners = numpy.where(idx < 4, predicted, other), numpy.where(idx < 4, other, predicted)
    t = 0.7 * numpy.eye(10)[labels] + 0.3 * numpy.eye(10)[partners]
    model, opt = _setup()
    loss_sum, correct, count = train_step(model, nn.CrossEntropyLoss(), opt, x, t, idx, seed=1, epoch=0,
                                          parallel=_one_process(model))
    assert (correct, count) == (4, 6)
    ref, loss = _manual_step(x, t, idx, 1, 0)
    assert loss_sum == loss * 6
    for a, b in zip(model.parameters(), ref.parameters()):
        numpy.testing.assert_array_equal(a.data, b.data)


def test_a_clipped_step_updates_with_the_gradient_scaled_to_the_bound():
    rng = numpy.random.default_rng(3)
    x, y, idx = rng.standard_normal((6, 3, 32, 32)), rng.integers(0, 10, 6), numpy.arange(6)
    model, opt = _setup()
    train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=2, epoch=1, parallel=_one_process(model),
               clip_norm=1e-3)
    norms = []

    def clip(ref):
        norms.append(optim.grad_norm(ref.parameters()))
        for p in ref.parameters():
            p.grad = p.grad * (1e-3 / (norms[0] + 1e-6))

    ref, _ = _manual_step(x, y, idx, 2, 1, before_update=clip)
    assert norms[0] > 1e-2   # the bound is below the gradient's norm: the step is clipped
    for a, b in zip(model.parameters(), ref.parameters()):
        numpy.testing.assert_allclose(a.data, b.data, rtol=1e-13, atol=1e-15)


def test_a_non_finite_loss_stops_before_anything_changes():
    rng = numpy.random.default_rng(1)
    x, y, idx = rng.standard_normal((4, 3, 32, 32)), rng.integers(0, 10, 4), numpy.arange(4)
    x[0, 0, 0, 0] = numpy.nan
    model, opt = _setup()
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError, match="the loss became nan"):
        train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=1, epoch=0, parallel=_one_process(model))
    for p, b in zip(model.parameters(), before):
        numpy.testing.assert_array_equal(p.data, b)


def test_one_process_must_hold_the_whole_batch():
    rng = numpy.random.default_rng(1)
    x, y, idx = rng.standard_normal((4, 3, 32, 32)), rng.integers(0, 10, 4), numpy.arange(4)
    model, opt = _setup()
    with pytest.raises(ValueError, match="hold 4 images of a global batch of 8"):
        train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=1, epoch=0, parallel=_one_process(model),
                   global_count=8)


def test_the_reference_code_trains_the_same_step_within_float32_rounding():
    """config.reference() switches every fast path off: the step a learner steps through in nn/ gives
    the same weights as the fast paths, within the float32 tolerance of the torch comparisons."""
    from npalexnet.gradcheck import relative_error as rel_error
    from npalexnet.gradcheck.torch_compare import TOLERANCES
    rng = numpy.random.default_rng(2)
    x, y, idx = rng.standard_normal((8, 3, 32, 32)).astype(numpy.float32), rng.integers(0, 10, 8), numpy.arange(8)
    results = {}
    for fast in (True, False):
        npalexnet.manual_seed(0)
        model = alexnet("cifar", width=0.25)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
        with config.using(fast_paths=fast, buffer_pool=fast):
            for step in range(3):
                train_step(model, nn.CrossEntropyLoss(label_smoothing=0.1), opt, x, y, idx, seed=3, epoch=step,
                           parallel=_one_process(model))
        results[fast] = {name: p.data.copy() for name, p in model.named_parameters()}
    _, tol_grad = TOLERANCES[numpy.float32]
    for name in results[True]:
        assert rel_error(results[True][name], results[False][name]) <= tol_grad, name



def _reference_sam_step(x, y, idx, rho):
    """SAM by hand: g at w, the gradient at w + rho g / ||g|| (the same dropout masks), SGD from w."""
    ref, ref_opt = _setup()
    loss_fn = nn.CrossEntropyLoss()
    with random_streams.sample_keys(idx, 5, 2):
        loss = loss_fn(ref(x), y)
    ref.backward(loss_fn.backward())
    grads = [p.grad.copy() for p in ref.parameters()]
    norm = numpy.sqrt(sum((g * g).sum() for g in grads))
    start = [p.data.copy() for p in ref.parameters()]
    for p, g in zip(ref.parameters(), grads):
        p.data = p.data + rho * g / norm
    ref_opt.zero_grad()
    with random_streams.sample_keys(idx, 5, 2):
        perturbed = loss_fn(ref(x), y)
    ref.backward(loss_fn.backward())
    for p, w in zip(ref.parameters(), start):
        p.data = w
    ref_opt.step()
    return ref, float(loss), float(perturbed)


def test_a_sam_step_updates_w_with_the_gradient_at_the_perturbed_weights():
    rng = numpy.random.default_rng(0)
    x, y, idx = rng.standard_normal((6, 3, 32, 32)), rng.integers(0, 10, 6), numpy.arange(10, 16)
    model, opt = _setup()
    loss_sum, _, _ = train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=5, epoch=2,
                                parallel=_one_process(model), sam_radius=0.05)
    ref, loss, perturbed = _reference_sam_step(x, y, idx, 0.05)
    assert loss_sum == pytest.approx(loss * 6, rel=1e-12)         # the loss at w, not at the perturbed weights
    assert perturbed > loss                                        # the climb went up
    for a, b in zip(model.parameters(), ref.parameters()):
        numpy.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)
    plain, plain_opt = _setup()
    train_step(plain, nn.CrossEntropyLoss(), plain_opt, x, y, idx, seed=5, epoch=2, parallel=_one_process(plain))
    moved = [numpy.abs(a.data - b.data).max() for a, b in zip(model.parameters(), plain.parameters())]
    assert max(moved) > 1e-6                                        # not the plain step


def test_a_sam_step_leaves_batchnorms_running_statistics_as_the_plain_step_does():
    rng = numpy.random.default_rng(3)
    x, y, idx = rng.standard_normal((4, 3, 227, 227)), rng.integers(0, 10, 4), numpy.arange(4)
    stats = []
    for radius in (0.0, 0.05):
        npalexnet.manual_seed(0)
        model = alexnet("bn", width=0.125).astype(numpy.float64)
        opt = optim.SGD(model.parameters(), lr=0.1)
        train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=1, epoch=0, parallel=_one_process(model),
                   sam_radius=radius)
        stats.append(dict(model.named_buffers()))
    assert stats[0] and stats[0].keys() == stats[1].keys()
    for name in stats[0]:
        numpy.testing.assert_array_equal(stats[0][name], stats[1][name])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_non_finite_loss_at_the_perturbed_weights_stops_with_the_weights_put_back():
    rng = numpy.random.default_rng(1)
    x, y, idx = rng.standard_normal((4, 3, 32, 32)), rng.integers(0, 10, 4), numpy.arange(4)
    model, opt = _setup()
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError, match="at the sharpness-aware perturbed weights became"):
        train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=1, epoch=0, parallel=_one_process(model),
                   sam_radius=1e300)
    for p, b in zip(model.parameters(), before):
        numpy.testing.assert_array_equal(p.data, b)
