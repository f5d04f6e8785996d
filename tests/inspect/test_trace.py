"""trace_step: what it records, the chain rule between records, the optimizer step, hook cleanup."""

import numpy
import pytest

import npalexnet
from npalexnet import nn, optim
from npalexnet.inspect import parameter_norms, trace_step
from npalexnet.inspect.trace import activation_stats, norm
from npalexnet.models import alexnet


@pytest.fixture
def batch():
    rng = numpy.random.default_rng(0)
    return rng.standard_normal((4, 3, 32, 32)).astype(numpy.float32), rng.integers(0, 10, 4)


def test_records_every_layer_in_forward_order(batch):
    model = alexnet("cifar", width=0.0625)
    trace = trace_step(model, *batch)
    assert [r.name for r in trace] == [n for n, m in model.named_modules() if not m._modules]
    assert trace["features.0"].input is batch[0]
    for rec in trace:
        assert rec.output.shape == rec.grad_output.shape
        assert rec.input.shape == rec.grad_input.shape
    # The chain rule, one layer at a time: what a layer passes down is what the one below receives.
    for below, above in zip(trace.records, trace.records[1:]):
        assert above.input is below.output
        numpy.testing.assert_array_equal(above.grad_input, below.grad_output)
    assert trace.records[-1].output is trace.logits
    numpy.testing.assert_array_equal(trace.records[-1].grad_output, trace.grad_logits)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_parameter_gradients_are_this_steps_and_match_a_manual_backward(batch):
    x, y = batch
    model = alexnet("cifar", width=0.0625, dropout=0.0)
    model(x)
    model.backward(numpy.ones((4, 10), dtype=numpy.float32))   # stale gradients, zeroed by the trace
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    trace = trace_step(model, x, y, crit)
    model.zero_grad()
    loss = crit(model(x), y)
    model.backward(crit.backward())
    assert trace.loss == pytest.approx(float(loss))
    conv1 = trace["features.0"]
    assert set(conv1.param_grads) == {"weight", "bias"}
    numpy.testing.assert_allclose(conv1.param_grads["weight"], model.features[0].weight.grad, rtol=1e-6)
    assert conv1.param_norms["weight"] == pytest.approx(norm(model.features[0].weight.data))


def test_optimizer_step_is_taken_after_recording(batch):
    model = alexnet("cifar", width=0.0625)
    before = model.features[0].weight.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.1)
    trace = trace_step(model, *batch, optimizer=opt)
    numpy.testing.assert_allclose(model.features[0].weight.data,
                                  before - 0.1 * trace["features.0"].param_grads["weight"], rtol=1e-5, atol=1e-7)


def test_table_and_statistics(batch):
    trace = trace_step(alexnet("cifar", width=0.0625), *batch)
    text = trace.table()
    assert "features.1" in text and "ReLU" in text and "|dL/dW|" in text and text.endswith(f"{trace.loss:.6f}")
    stats = activation_stats(numpy.array([0.0, 0.0, 1.0, 3.0]))
    assert stats == {"mean": 1.0, "std": pytest.approx(numpy.std([0, 0, 1, 3])), "zero_fraction": 0.5}
    relu = trace["features.1"]
    assert activation_stats(relu.output)["zero_fraction"] > 0.2
    with pytest.raises(KeyError, match="no layer named"):
        trace["nope"]


def test_containers_too_when_asked(batch):
    npalexnet.manual_seed(0)
    trace = trace_step(alexnet("cifar", width=0.0625), *batch, leaves_only=False)
    names = [r.name for r in trace]
    assert "AlexNet" in names and "features" in names and "classifier" in names
    assert trace["AlexNet"].grad_output.shape == (4, 10)


def test_parameter_norms(batch):
    model = alexnet("cifar", width=0.0625)
    norms = parameter_norms(model)
    assert list(norms) == [n for n, _ in model.named_parameters()]
    assert norms["features.0.weight"]["grad"] is None
    trace_step(model, *batch)
    norms = parameter_norms(model)
    w = model.features[0].weight
    assert norms["features.0.weight"]["grad"] == pytest.approx(float(numpy.linalg.norm(w.grad)), rel=1e-6)
    assert norms["features.0.weight"]["weight"] == pytest.approx(float(numpy.linalg.norm(w.data)), rel=1e-6)


@pytest.mark.gpu
def test_a_trace_on_the_gpu_records_what_the_cpu_trace_records(batch):
    """The study tools on a model moved to the GPU: the same records, the same numbers to float32 rounding
    (im2col on both), a table and parameter norms read without the learner copying anything."""
    import cupy

    from npalexnet import config
    x, y = batch
    npalexnet.manual_seed(0)
    cpu_model = alexnet("cifar", width=0.0625, dropout=0.0)
    npalexnet.manual_seed(0)
    gpu_model = alexnet("cifar", width=0.0625, dropout=0.0).to("cuda")
    with config.using(conv="im2col"):
        cpu = trace_step(cpu_model, x, y)
    gpu = trace_step(gpu_model, cupy.asarray(x), cupy.asarray(y))
    assert gpu.loss == pytest.approx(cpu.loss, rel=1e-5)
    assert [r.name for r in gpu] == [r.name for r in cpu]
    for a, b in zip(cpu, gpu):
        ref = numpy.asarray(a.grad_output)
        numpy.testing.assert_allclose(npalexnet.asnumpy(b.grad_output), ref, rtol=0,
                                      atol=1e-4 * float(numpy.abs(ref).max() or 1.0), err_msg=a.name)
        for name, value in a.param_norms.items():
            assert b.param_norms[name] == pytest.approx(value, rel=1e-5)
    assert "features.1" in gpu.table()
    norms = parameter_norms(gpu_model)
    assert norms["features.0.weight"]["grad"] == pytest.approx(parameter_norms(cpu_model)["features.0.weight"]["grad"],
                                                               rel=1e-4)
