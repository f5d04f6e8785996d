"""An npalexnet model as an ONNX graph, written from its own layers with the ``onnx`` package.

How the graph is made: one forward pass of a zero image (batch 1, evaluation
mode, no backward caches) with a forward hook on every leaf layer records the
layers in the order they run and the shape each one receives. Each layer is
then written by the converter registered for its class in
:data:`CONVERTERS` (one function per layer type; a new layer type needs one
more ``@converter(LayerClass)`` function). The model must be a chain, each
layer taking the previous one's output, as every AlexNet variant is.

The graph:

* input ``images``: ``(batch, C, H, W)`` float32, already normalised
  (``(image / 255 - mean) / std``, constants in the metadata), ``batch``
  dynamic; output ``logits``: ``(batch, K)``;
* weights as initializers under their ``state_dict`` names
  (``features.0.weight``), nodes named after their layers;
* inference semantics: dropout is left out, BatchNorm uses its running
  statistics;
* the metadata table of :mod:`npalexnet.export.metadata` in
  ``metadata_props``.

Conventions that needed care (torch's are npalexnet's):

* MaxPool: torch rounds the output size down: ONNX's ``ceil_mode=0``; padding
  never wins the max (ONNX pads MaxPool with -inf too).
* LRN: ONNX divides alpha by ``size`` exactly as torch does
  (``x / (bias + alpha/size * sum x^2)^beta``), so the attributes are
  copied. ONNX's window runs from ``c - floor((size-1)/2)`` to
  ``c + ceil((size-1)/2)``, torch's from ``c - size//2`` to
  ``c + (size-1)//2``: the same for odd sizes (AlexNet's 5); for an even
  size the windows are mirror images, so the channels are reversed around
  the LRN node.
* AdaptiveAvgPool2d: fixed once the input size is: nothing when input and
  output sizes agree (torchvision's net at 224: 6x6 -> 6x6),
  GlobalAveragePool for a 1x1 output, AveragePool when the size divides,
  otherwise torch's overlapping windows as the layer computes them, two
  averaging-matrix products ``A_h x A_w^T``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy

from .. import __version__, backend, nn
from .errors import ExportError

#: The default opset: ONNX 1.12 (2022), read by every maintained runtime. 13 is the oldest the
#: converters are written for (Squeeze/Unsqueeze take their axes as an input from 13 on).
OPSET, MIN_OPSET = 17, 13
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("ONNX export needs the onnx package: pip install \"npalexnet[export]\"") from exc
    return onnx


@dataclass
class LayerCall:
    """One leaf layer as the traced forward ran it."""

    name: str                # dotted module name, e.g. "features.0"
    layer: nn.Module
    input_shape: tuple       # (1, C, H, W) or (1, F): batch 1
    output_shape: tuple


@dataclass
class GraphBuilder:
    """Collects the nodes and initializers of the graph being written."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)

    def constant(self, name: str, array) -> str:
        """An initializer holding ``array`` (weights as float32); returns its name."""
        onnx = _onnx()
        array = backend.asnumpy(array)
        if array.dtype.kind == "f":
            array = array.astype(numpy.float32)
        self.initializers.append(onnx.numpy_helper.from_array(numpy.asarray(array, order="C"), name))
        return name

    def node(self, op: str, inputs: list, name: str, **attributes) -> str:
        """Append an ``op`` node whose one output is named ``name``; returns that name."""
        self.nodes.append(_onnx().helper.make_node(op, inputs, [name], name=name, **attributes))
        return name


#: layer class -> converter(graph, call, x) returning the name of the layer's output.
CONVERTERS: dict[type, Callable[[GraphBuilder, LayerCall, str], str]] = {}


def converter(layer_type: type):
    """Register the decorated function as the ONNX converter of ``layer_type``."""
    def register(function):
        CONVERTERS[layer_type] = function
        return function
    return register


@converter(nn.Conv2d)
def _conv2d(g: GraphBuilder, call: LayerCall, x: str) -> str:
    conv = call.layer
    inputs = [x, g.constant(f"{call.name}.weight", conv.weight.data)]
    if conv.bias is not None:
        inputs.append(g.constant(f"{call.name}.bias", conv.bias.data))
    (ph, pw) = conv.padding
    return g.node("Conv", inputs, call.name, kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
                  pads=[ph, pw, ph, pw], group=conv.groups)


@converter(nn.Linear)
def _linear(g: GraphBuilder, call: LayerCall, x: str) -> str:
    # y = x W^T + b: Gemm with transB=1 takes torch's (OUT, IN) weight as it is.
    linear = call.layer
    inputs = [x, g.constant(f"{call.name}.weight", linear.weight.data)]
    if linear.bias is not None:
        inputs.append(g.constant(f"{call.name}.bias", linear.bias.data))
    return g.node("Gemm", inputs, call.name, transB=1)


@converter(nn.ReLU)
def _relu(g: GraphBuilder, call: LayerCall, x: str) -> str:
    return g.node("Relu", [x], call.name)


@converter(nn.MaxPool2d)
def _maxpool2d(g: GraphBuilder, call: LayerCall, x: str) -> str:
    pool = call.layer
    (ph, pw) = pool.padding
    return g.node("MaxPool", [x], call.name, kernel_shape=list(pool.kernel_size), strides=list(pool.stride),
                  pads=[ph, pw, ph, pw], ceil_mode=0)


@converter(nn.LocalResponseNorm)
def _local_response_norm(g: GraphBuilder, call: LayerCall, x: str) -> str:
    lrn, n = call.layer, call.layer.size
    if n % 2:
        return g.node("LRN", [x], call.name, size=n, alpha=lrn.alpha, beta=lrn.beta, bias=lrn.k)
    # Even size: ONNX's window is torch's mirrored, and onnxruntime refuses even sizes, so the
    # formula itself: the mean of x^2 over torch's window (zero-padded) is a 3-D average pool.
    def constant(part, value, dtype=numpy.float32):
        return g.constant(f"{call.name}.{part}", numpy.array(value, dtype=dtype))
    axis = constant("channel_axis", [1], numpy.int64)
    squares = g.node("Mul", [x, x], f"{call.name}.squares")
    planes = g.node("Unsqueeze", [squares, axis], f"{call.name}.squares_5d")    # (N, 1, C, H, W)
    window = g.node("AveragePool", [planes], f"{call.name}.window_mean_5d", kernel_shape=[n, 1, 1],
                    pads=[n // 2, 0, 0, (n - 1) // 2, 0, 0], count_include_pad=1)
    mean = g.node("Squeeze", [window, axis], f"{call.name}.window_mean")
    scaled = g.node("Mul", [mean, constant("alpha", lrn.alpha)], f"{call.name}.alpha_mean")
    s = g.node("Add", [scaled, constant("k", lrn.k)], f"{call.name}.s")      # k + alpha/n * sum x^2
    power = g.node("Pow", [s, constant("minus_beta", -lrn.beta)], f"{call.name}.s_pow")
    return g.node("Mul", [x, power], call.name)


@converter(nn.BatchNorm2d)
def _batchnorm2d(g: GraphBuilder, call: LayerCall, x: str) -> str:
    bn = call.layer   # inference: the running statistics (training_mode=0, the default)
    inputs = [x] + [g.constant(f"{call.name}.{part}", value) for part, value in
                    (("weight", bn.weight.data), ("bias", bn.bias.data), ("running_mean", bn.running_mean),
                     ("running_var", bn.running_var))]
    return g.node("BatchNormalization", inputs, call.name, epsilon=bn.eps)


@converter(nn.Dropout)
def _dropout(g: GraphBuilder, call: LayerCall, x: str) -> str:
    return x   # the identity at inference: no node


@converter(nn.Flatten)
def _flatten(g: GraphBuilder, call: LayerCall, x: str) -> str:
    flatten, rank = call.layer, len(call.input_shape)
    start, end = flatten.start_dim % rank, flatten.end_dim % rank
    if start == 0:
        raise ExportError(f"{call.name}: Flatten(start_dim=0) merges the batch axis, which the graph keeps dynamic")
    if end == rank - 1:
        return g.node("Flatten", [x], call.name, axis=start)
    shape = g.constant(f"{call.name}.shape", numpy.array((0,) + tuple(call.output_shape[1:]), dtype=numpy.int64))
    return g.node("Reshape", [x, shape], call.name)   # 0: keep the (dynamic) batch size


@converter(nn.AdaptiveAvgPool2d)
def _adaptive_avgpool2d(g: GraphBuilder, call: LayerCall, x: str) -> str:
    (h, w), (oh, ow) = call.input_shape[2:], call.output_shape[2:]
    if (oh, ow) == (h, w):
        return x   # every window is one pixel
    if (oh, ow) == (1, 1):
        return g.node("GlobalAveragePool", [x], call.name)
    if h % oh == 0 and w % ow == 0:   # equal, non-overlapping windows
        return g.node("AveragePool", [x], call.name, kernel_shape=[h // oh, w // ow], strides=[h // oh, w // ow])
    # torch's windows overlap or differ in size here: the layer's own averaging matrices.
    a_h = nn.AdaptiveAvgPool2d.averaging_matrix(numpy, h, oh, numpy.float32)
    a_w = nn.AdaptiveAvgPool2d.averaging_matrix(numpy, w, ow, numpy.float32)
    columns = g.node("MatMul", [x, g.constant(f"{call.name}.A_w_T", a_w.T)], f"{call.name}.columns")
    return g.node("MatMul", [g.constant(f"{call.name}.A_h", a_h), columns], call.name)


def trace_layers(model: nn.Module, input_shape) -> list[LayerCall]:
    """The leaf layers of ``model`` in the order a forward pass of ``(1, *input_shape)`` runs them.

    Raises:
        ExportError: the forward fails for this shape, or the model is not a
            chain (a layer that does not take the previous layer's output).
    """
    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    xp = backend.get_array_module(next(iter(model.parameters())).data)
    images = xp.zeros((1,) + tuple(input_shape), dtype=model.dtype)
    calls, outputs = [], [images]

    def record(module, inputs, output, name):
        if inputs is not outputs[-1]:
            raise ExportError(f"{name} does not take the output of {calls[-1].name if calls else 'the input'}: "
                              "only chains of layers can be exported")
        calls.append(LayerCall(name, module, tuple(inputs.shape), tuple(output.shape)))
        outputs.append(output)

    handles = [m.register_forward_hook(lambda mod, inp, out, name=name: record(mod, inp, out, name))
               for name, m in leaves]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with nn.no_grad():
            result = model(images)
    except ExportError:
        raise
    except ValueError as exc:
        raise ExportError(f"the model does not run on input of shape {tuple(input_shape)}: {exc}") from exc
    finally:
        for m, mode in modes:   # give the model back in the modes it came in
            m.training = mode
        for handle in handles:
            handle.remove()
    if result is not outputs[-1]:
        raise ExportError(f"the model's output is not the output of its last layer ({calls[-1].name if calls else ''})"
                          ": only chains of layers can be exported")
    return calls


def build_onnx(model: nn.Module, input_shape, metadata: dict[str, str] | None = None, opset: int = OPSET):
    """The ``onnx.ModelProto`` of ``model`` for images of ``input_shape`` = (C, H, W).

    Raises:
        ExportError: a layer without a converter, or a model that is not a chain.
    """
    onnx = _onnx()
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ExportError(f"opset {opset} is not supported: expected {MIN_OPSET} to "
                          f"{onnx.defs.onnx_opset_version()} (this onnx package's newest)")
    helper = onnx.helper
    g = GraphBuilder()
    x = INPUT_NAME
    calls = trace_layers(model, input_shape)
    for call in calls:
        convert = next((CONVERTERS[t] for t in type(call.layer).__mro__ if t in CONVERTERS), None)
        if convert is None:
            raise ExportError(f"no ONNX converter for {call.name} ({type(call.layer).__name__}); register one "
                              "with @npalexnet.export.onnx.converter")
        x = convert(g, call, x)
    if x == INPUT_NAME or not g.nodes or g.nodes[-1].output[0] != x:
        raise ExportError("the model's output is not computed by its last node: nothing to export")
    g.nodes[-1].output[0] = OUTPUT_NAME
    output_shape = calls[-1].output_shape
    graph = helper.make_graph(
        g.nodes, f"npalexnet_{getattr(model, 'variant', type(model).__name__)}",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", *output_shape[1:]])],
        initializer=g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="npalexnet",
                              producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)   # older runtimes refuse newer IR versions
    helper.set_model_props(proto, dict(metadata or {}))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: nn.Module, path, input_shape, metadata: dict[str, str] | None = None,
                opset: int = OPSET):
    """Write ``model`` as ONNX to ``path`` atomically (temporary file, fsync, rename).

    Inputs:
        model: an npalexnet model (any device; the weights are written as float32).
        input_shape: (C, H, W) of one image, e.g. (3, 32, 32) for the CIFAR net.
        metadata: string table for ``metadata_props`` (see :mod:`.metadata`).
    Returns:
        The path written.
    """
    from ..data.atomic import atomic_write

    proto = build_onnx(model, input_shape, metadata, opset)
    data = proto.SerializeToString()   # protobuf's limit is 2 GB; AlexNet is 0.25 GB
    return atomic_write(path, lambda f: f.write(data))


def run_onnxruntime(path, images) -> numpy.ndarray:
    """Logits (N, K) of the ONNX file ``path`` for normalised ``images`` (N, C, H, W), by onnxruntime."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError("running ONNX needs onnxruntime: pip install \"npalexnet[export]\"") from exc
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = numpy.ascontiguousarray(backend.asnumpy(images), dtype=numpy.float32)
    return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
