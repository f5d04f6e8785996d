"""The ONNX exporter: every variant's graph passes onnx.checker and gives npalexnet's logits in onnxruntime."""

from __future__ import annotations

import json

import numpy
import pytest

from npalexnet import nn
from npalexnet.export import CONVERTERS, ExportError, converter, export_metadata, export_onnx, run_onnxruntime
from npalexnet.export.onnx import OPSET, build_onnx
from npalexnet.models import INPUT_SIZE, alexnet
from tests.export.common import TOLERANCE, relative_error
from tests.export.common import images as _images
from tests.export.common import logits as _logits
from tests.export.common import randomise_batchnorm as _randomise_batchnorm

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _assert_same_logits(path, model, images):
    ours, theirs = _logits(model, images), run_onnxruntime(path, images)
    assert theirs.shape == ours.shape
    error = relative_error(theirs, ours)
    assert error < TOLERANCE, f"onnxruntime differs from npalexnet by {error:.2e} (relative)"


def _ops(path):
    return [node.op_type for node in onnx.load(str(path)).graph.node]


VARIANTS = [
    pytest.param("paper", {}, id="paper-groups2-lrn"),
    pytest.param("paper", {"groups": 1, "lrn": False}, id="paper-groups1-nolrn"),
    pytest.param("torchvision", {}, id="torchvision"),
    pytest.param("cifar", {}, id="cifar"),
    pytest.param("cifar", {"lrn": True}, id="cifar-lrn"),
    pytest.param("bn", {}, id="bn"),
]


@pytest.mark.parametrize("variant, kwargs", VARIANTS)
def test_every_variant_matches_onnxruntime(variant, kwargs, tmp_path):
    model = _randomise_batchnorm(alexnet(variant, num_classes=7, width=0.25, **kwargs))
    size = INPUT_SIZE[variant]
    path = export_onnx(model, tmp_path / "model.onnx", (3, size, size))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    _assert_same_logits(path, model, _images((3, size, size)))
    ops = set(_ops(path))
    assert "Dropout" not in ops and {"Conv", "Relu", "MaxPool", "Gemm", "Flatten"} <= ops
    assert ("LRN" in ops) == (variant == "paper" and kwargs.get("lrn", True) or bool(kwargs.get("lrn")))
    assert ("BatchNormalization" in ops) == (variant == "bn")


def test_groups_and_lrn_attributes_are_the_layers(tmp_path):
    model = alexnet("paper", width=0.25)
    graph = onnx.load(str(export_onnx(model, tmp_path / "m.onnx", (3, 227, 227)))).graph
    attributes = {node.name: {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                  for node in graph.node}
    assert [attributes[f"features.{i}"]["group"] for i in (0, 4, 8, 10, 12)] == [1, 2, 1, 2, 2]
    lrn = model.features[2]
    # ONNX divides alpha by size as torch does: the layer's own alpha (the paper's 1e-4 times 5) goes in.
    assert attributes["features.2"]["size"] == 5 and attributes["features.2"]["alpha"] == pytest.approx(lrn.alpha)
    assert attributes["features.2"]["bias"] == pytest.approx(2.0) and attributes["features.2"]["beta"] == 0.75
    assert attributes["classifier.0"]["transB"] == 1


def test_graph_interface_dynamic_batch_and_metadata(tmp_path):
    model = alexnet("cifar", width=0.125)
    metadata = export_metadata({"variant": "cifar", "num_classes": 10, "width": 0.125},
                               classes=[f"c{i}" for i in range(10)], mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2),
                               input_size=32)
    path = export_onnx(model.train(), tmp_path / "m.onnx", (3, 32, 32), metadata)
    assert model.training   # the exporter evaluates in eval mode and gives the model back as it was
    model.classifier.eval()
    export_onnx(model, tmp_path / "again.onnx", (3, 32, 32))
    assert model.features.training and not model.classifier.training
    proto = onnx.load(str(path))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "images" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 32, 32]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    assert proto.opset_import[0].version == OPSET
    props = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert props["classes"][3] == "c3" and props["mean"] == [0.5, 0.4, 0.3] and props["input_size"] == 32
    assert props["model_kwargs"]["width"] == 0.125 and props["variant"] == "cifar"
    initializers = {t.name for t in proto.graph.initializer}
    assert set(model.state_dict()) <= initializers   # the weights under their state_dict names
    for n in (1, 5):
        _assert_same_logits(path, model, _images((3, 32, 32), n=n, seed=n))


@pytest.mark.parametrize("size, op", [(224, None), (160, "MatMul"), (63, "MatMul"), (255, "MatMul")])
def test_torchvision_adaptive_pool_at_other_sizes(size, op, tmp_path):
    model = alexnet("torchvision", num_classes=5, width=0.125)
    path = export_onnx(model, tmp_path / "m.onnx", (3, size, size))
    ops = _ops(path)
    assert "AveragePool" not in ops and "GlobalAveragePool" not in ops
    assert (op in ops) if op else "MatMul" not in ops   # 224: 6x6 -> 6x6 is the identity, no node
    _assert_same_logits(path, model, _images((3, size, size), n=2))


@pytest.mark.parametrize("output_size, hw, op", [(1, (7, 5), "GlobalAveragePool"), (3, (9, 6), "AveragePool"),
                                                 ((2, 3), (7, 8), "MatMul"), ((None, 2), (5, 6), "AveragePool")])
def test_adaptive_avgpool_forms(output_size, hw, op, tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.AdaptiveAvgPool2d(output_size), nn.Flatten(1))
    path = export_onnx(model, tmp_path / "m.onnx", (2, *hw))
    assert op in _ops(path)
    _assert_same_logits(path, model, _images((2, *hw)))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
def test_lrn_odd_and_even_sizes(size, tmp_path):
    # alpha large enough that the normalisation changes the result a lot; few channels, so the window's
    # zero padding at the edges matters; even sizes have torch's asymmetric window.
    model = nn.Sequential(nn.Conv2d(3, 5, 1), nn.LocalResponseNorm(size, alpha=3.0, beta=0.75, k=0.5),
                          nn.Flatten(1))
    path = export_onnx(model, tmp_path / "m.onnx", (3, 4, 4))
    assert ("LRN" in _ops(path)) == (size % 2 == 1)
    images = 2 * _images((3, 4, 4))
    with nn.no_grad():
        conv_only = numpy.asarray(model[0](images)).reshape(len(images), -1)
    assert numpy.abs(conv_only - _logits(model, images)).max() > 0.1   # the LRN is not a no-op here
    _assert_same_logits(path, model, images)


def test_flatten_with_an_end_dim_and_maxpool_padding(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, padding=1), nn.Flatten(1, 2))
    path = export_onnx(model, tmp_path / "m.onnx", (3, 9, 8))
    assert "Reshape" in _ops(path)
    _assert_same_logits(path, model, -_images((3, 9, 8)))   # negative inputs: the padding must never win


def test_a_new_layer_type_needs_one_converter(tmp_path, monkeypatch):
    class Double(nn.Module):
        def forward(self, x):
            return x * 2

    model = nn.Sequential(nn.Conv2d(3, 2, 1), Double(), nn.Flatten(1))
    with pytest.raises(ExportError, match=r"no ONNX converter for 1 \(Double\)"):
        export_onnx(model, tmp_path / "m.onnx", (3, 2, 2))
    assert list(tmp_path.iterdir()) == []   # nothing half-written

    monkeypatch.setitem(CONVERTERS, Double, CONVERTERS.get(Double))   # restored after the test

    @converter(Double)
    def _double(g, call, x):
        two = g.constant(f"{call.name}.two", numpy.array(2, dtype=numpy.float32))
        return g.node("Mul", [x, two], call.name)

    _assert_same_logits(export_onnx(model, tmp_path / "m.onnx", (3, 2, 2)), model, _images((3, 2, 2)))


def test_models_that_cannot_be_exported_say_why():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x)) + self.conv(x)

    class Scaled(nn.Sequential):
        def forward(self, x):
            return super().forward(x * 2)

    class Shifted(nn.Sequential):
        def forward(self, x):
            return super().forward(x) + 1

    with pytest.raises(ExportError, match="conv does not take the output of relu: only chains of layers"):
        build_onnx(Residual(), (2, 3, 3))
    with pytest.raises(ExportError, match="0 does not take the output of the input"):
        build_onnx(Scaled(nn.Conv2d(2, 2, 1)), (2, 3, 3))
    with pytest.raises(ExportError, match=r"the model's output is not the output of its last layer \(0\)"):
        build_onnx(Shifted(nn.Conv2d(2, 2, 1)), (2, 3, 3))
    with pytest.raises(ExportError, match=r"does not run on input of shape \(3, 16, 16\)"):
        build_onnx(alexnet("paper", width=0.125), (3, 16, 16))


@pytest.mark.parametrize("opset", [13, 21])
def test_other_opsets(opset, tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.LocalResponseNorm(4, alpha=2.0), nn.MaxPool2d(2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(6, 2))
    path = export_onnx(model, tmp_path / "m.onnx", (3, 8, 8), opset=opset)
    assert onnx.load(str(path)).opset_import[0].version == opset
    _assert_same_logits(path, model, _images((3, 8, 8)))


def test_unsupported_opset():
    with pytest.raises(ExportError, match="opset 11 is not supported: expected 13 to"):
        build_onnx(alexnet("cifar", width=0.125), (3, 32, 32), opset=11)
