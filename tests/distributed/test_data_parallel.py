"""train_step in one process: the plain SGD step, with dropout keyed by sample."""

import numpy

import npalexnet
from npalexnet import nn, optim, random_streams
from npalexnet.distributed import DataParallel, SingleProcessCommunicator, train_step
from npalexnet.models import alexnet


def _setup():
    npalexnet.manual_seed(0)
    model = alexnet("cifar", width=0.125).astype(numpy.float64)
    return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def test_train_step_is_the_manual_step_with_keyed_dropout():
    rng = numpy.random.default_rng(0)
    x, y, idx = rng.standard_normal((6, 3, 32, 32)), rng.integers(0, 10, 6), numpy.arange(10, 16)
    model, opt = _setup()
    loss_sum, correct = train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=5, epoch=2)

    ref, ref_opt = _setup()
    loss_fn = nn.CrossEntropyLoss()
    with random_streams.sample_keys(idx, 5, 2):
        loss = loss_fn(ref(x), y)
    ref_opt.zero_grad()
    ref.backward(loss_fn.backward())
    ref_opt.step()
    assert loss_sum == float(loss) * 6 and 0 <= correct <= 6
    for a, b in zip(model.parameters(), ref.parameters()):
        numpy.testing.assert_array_equal(a.data, b.data)


def test_data_parallel_on_one_process_changes_nothing():
    rng = numpy.random.default_rng(1)
    x, y, idx = rng.standard_normal((4, 3, 32, 32)), rng.integers(0, 10, 4), numpy.arange(4)
    model, opt = _setup()
    parallel = DataParallel(model, SingleProcessCommunicator())
    parallel.broadcast_initial_state()
    assert parallel.local_batch(idx) is not None and len(parallel.local_batch(idx)) == 4
    train_step(model, nn.CrossEntropyLoss(), opt, x, y, idx, seed=1, epoch=0, parallel=parallel, global_count=4)
    ref, ref_opt = _setup()
    train_step(ref, nn.CrossEntropyLoss(), ref_opt, x, y, idx, seed=1, epoch=0)
    for a, b in zip(model.parameters(), ref.parameters()):
        numpy.testing.assert_array_equal(a.data, b.data)
