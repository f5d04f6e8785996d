"""Share-weighted gradient averaging in the fused buffer, checked by playing every rank in one process."""

import numpy
import pytest

import npalexnet
from npalexnet import nn
from npalexnet.distributed import FusedBuffer, GradientAverager, local_slice, shares
from npalexnet.gradcheck import relative_error
from npalexnet.models import alexnet

from .helpers import RecordingCommunicator


def _model():
    npalexnet.manual_seed(0)
    return alexnet("cifar", width=0.125, dropout=0.0).astype(numpy.float64)


def _gradients(model, x, y):
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    return [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("size", [2, 3])
def test_weighted_sum_of_rank_gradients_is_the_global_gradient(size):
    """sum_r (n_r/N) g_r = g for an uneven split (7 samples over 2 or 3 ranks)."""
    rng = numpy.random.default_rng(1)
    x, y = rng.standard_normal((7, 3, 32, 32)), rng.integers(0, 10, 7)
    model = _model()
    expected = _gradients(model, x, y)
    total = None
    for rank in range(size):
        part = local_slice(numpy.arange(7), rank, size)
        _gradients(model, x[part], y[part])
        comm = RecordingCommunicator(rank, size)
        averager = GradientAverager(model, comm)
        averager.average(len(part), 7)
        total = comm.sent[0] if total is None else total + comm.sent[0]
    got = FusedBuffer([p.shape for p in model.parameters()], numpy.float64, numpy)
    got.flat[...] = total
    for e, g in zip(expected, got.views):
        assert relative_error(g, e) < 1e-13


def test_a_plain_average_would_be_wrong_for_uneven_shares():
    rng = numpy.random.default_rng(2)
    x, y = rng.standard_normal((5, 3, 32, 32)), rng.integers(0, 10, 5)
    model = _model()
    expected = _gradients(model, x, y)
    g0, g1 = _gradients(model, x[:3], y[:3]), _gradients(model, x[3:], y[3:])
    assert max(relative_error((a + b) / 2, e) for a, b, e in zip(g0, g1, expected)) > 1e-3
    assert max(relative_error(0.6 * a + 0.4 * b, e) for a, b, e in zip(g0, g1, expected)) < 1e-13


def test_unpack_points_grads_at_the_buffer_and_missing_grads_count_as_zero():
    model = _model()
    params = list(model.parameters())
    for p in params:
        p.grad = numpy.ones(p.shape)
    params[0].grad = None
    comm = RecordingCommunicator(0, 2)
    averager = GradientAverager(params, comm)
    averager.average(1, 4)
    assert numpy.all(comm.sent[0][:params[0].size] == 0)
    assert numpy.all(comm.sent[0][params[0].size:] == 0.25)
    for p, view in zip(params, averager.buffer.views):
        assert p.grad is view and numpy.shares_memory(p.grad, averager.buffer.flat)
    buffer = averager.buffer.flat
    averager.average(1, 4)            # the same buffer, reused
    assert averager.buffer.flat is buffer
    assert numpy.all(params[1].grad == 0.25 * 0.25)   # the grads were views: packed in place


def test_zero_local_samples_sends_zeros():
    model = _model()
    comm = RecordingCommunicator(1, 2)
    GradientAverager(model, comm).average(0, 1)
    assert not comm.sent[0].any()


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="n_r <= N"):
        GradientAverager(model, RecordingCommunicator(0, 2)).average(5, 4)
    with pytest.raises(ValueError, match="no parameters"):
        GradientAverager([], RecordingCommunicator(0, 2))
    params = list(model.parameters())
    params[0].data = params[0].data.astype(numpy.float32)
    with pytest.raises(TypeError, match="dtypes"):
        GradientAverager(params, RecordingCommunicator(0, 2))


def test_shares():
    assert shares([4, 3]) == [4 / 7, 3 / 7]
    assert shares([0, 0]) == [0.0, 0.0]
    assert sum(shares([5, 5, 4])) == pytest.approx(1.0)


def test_fused_buffer_lays_arrays_back_to_back(xp):
    buf = FusedBuffer([(2, 3), (4,), ()], numpy.float32, xp)
    assert buf.flat.shape == (11,) and len(buf) == 3 and buf.offsets == [0, 6, 10, 11]
    buf.views[1][...] = 7
    assert npalexnet.asnumpy(buf.flat)[6:10].tolist() == [7, 7, 7, 7]


class _QueueingCommunicator(RecordingCommunicator):
    """Rank 0 of 2 whose allreduce, like NCCL's, only queues device work on the stream and returns
    (matrix products of some milliseconds, so that the work is still queued when average() returns)."""

    def allreduce(self, buffer):
        import cupy

        work = cupy.full((4096, 4096), 1e-4)
        for _ in range(8):
            work = work @ work
        buffer *= 1.0
        return buffer


def test_allreduce_time_of_host_buffers():
    model = _model()
    for p in model.parameters():
        p.grad = numpy.ones(p.shape)
    averager = GradientAverager(model, RecordingCommunicator(0, 2))
    assert averager.last_seconds == 0.0
    averager.average(1, 2)
    assert averager.last_seconds > 0.0


@pytest.mark.gpu
def test_allreduce_time_of_device_buffers_waits_for_the_stream():
    """For a device buffer the time is read from events on the stream: reading it waits for the reduction
    (a host clock around NCCL's call would have returned at once, the work still queued)."""
    import cupy

    model = _model().to("cuda")
    for p in model.parameters():
        p.grad = cupy.ones(p.shape)
    averager = GradientAverager(model, _QueueingCommunicator(0, 2))
    averager.average(1, 2)
    seconds = averager.last_seconds
    assert cupy.cuda.get_current_stream().done
    assert isinstance(seconds, float) and seconds > 0.0
    assert averager.last_seconds == seconds   # read once, kept
