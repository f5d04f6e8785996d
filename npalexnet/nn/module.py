"""``Parameter``, ``Module`` and ``Sequential``: the torch-shaped skeleton.

A layer is written as two methods, in the manner of "Deep Learning from
Scratch": ``forward(x)`` computes the output and keeps what the backward pass
needs as attributes (named in ``saved_for_backward``); ``backprop(grad_out)``
returns the gradient with respect to the input and *accumulates* into each
parameter's ``.grad`` (as torch does, so a gradient is summed over calls
until ``zero_grad()``).

Users call the two public template methods, which do the same bookkeeping for
every module, once:

* ``module(x)`` (``__call__``): validates the input (``check_input``), runs
  ``forward`` (or, for a layer that names a ``seam``, the faster
  implementation :mod:`npalexnet.kernels` chooses for this input, if any),
  remembers that a backward pass may follow, and fires the forward hooks;
* ``module.backward(grad_out, input_grad=True)``: checks that a forward came
  first and that the gradient has the output's shape, runs ``backprop`` (or
  the same fast implementation's backward), forgets what forward kept, and
  fires the backward hooks. ``input_grad=False`` tells layers that can skip
  the gradient with respect to their input (``skips_input_grad``) that nobody
  needs it.

Attributes are registered the way torch registers them: assigning a
``Parameter`` or a ``Module`` to an attribute records it, and buffers (state
that is not trained, such as BatchNorm's running statistics) are declared
with ``register_buffer``. Names in ``named_parameters()`` and
``state_dict()`` are dotted paths identical to torch's for the same
architecture, so torch weights load directly.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterator

import numpy

from .. import backend, config, kernels
from .summary import summary


class BackwardBeforeForwardError(RuntimeError, ValueError):
    """``backward()`` without a matching ``forward()``.

    A RuntimeError, as torch raises for a backward through a freed graph,
    and a ValueError, as every other bad-input error of the library.
    """


class Parameter:
    """A trainable array and its gradient.

    Attributes:
        data: the array (NumPy or CuPy).
        grad: an array of the same shape, or ``None`` before the first backward
            and after ``zero_grad()``.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def accumulate_grad(self, grad) -> None:
        """Add ``grad`` to ``.grad``; the first contribution is adopted as it is.

        Callers pass an array computed for this purpose that nothing else
        will write to (a copy of fc6's gradient alone would be 150 MB a step).
        """
        if grad.shape != self.data.shape:
            raise ValueError(f"gradient of shape {grad.shape} for a parameter of shape {self.data.shape}")
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype})"


class _Pending:
    """What a forward leaves for its backward: who ran it, its state, the output's shape."""

    __slots__ = ("implementation", "state", "output_shape")

    def __init__(self, implementation, state, output_shape):
        self.implementation, self.state, self.output_shape = implementation, state, output_shape


class Module:
    """Base class of every layer and model (see the module docstring).

    A layer defines ``forward(x)`` and ``backprop(grad_out)``, and may set:

    * ``saved_for_backward``: the attributes ``forward`` keeps for ``backprop``
      (dropped after the backward pass, and at once under ``no_grad()``);
    * ``skips_input_grad = True``: ``backprop(grad_out, input_grad)`` takes
      the flag and may return None when it is False;
    * ``seam``: the name under which :mod:`npalexnet.kernels` may hold faster
      implementations of this layer's forward and backprop;
    * ``check_input(x)``: raise a clear error for an input it cannot take.
    """

    seam: str | None = None
    saved_for_backward: tuple = ()
    skips_input_grad = False
    runs_children_in_order = False   # a container whose forward is its children, in order (Sequential)

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_pending", None)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 "before assigning attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)   # a new value for a registered buffer
            return
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array) -> None:
        """Declare non-trained state that belongs in ``state_dict()``."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Declare a parameter (``None`` records an absent optional one, e.g. bias)."""
        if param is None:
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    # ------------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, mod in modules:
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        for mod_name, mod in self.named_modules(prefix):
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter gradient (to ``None`` by default, as torch 2 does)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    # ------------------------------------------------------------------ forward/backward
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backprop(self, grad_out):
        raise NotImplementedError(f"{type(self).__name__} does not implement backprop")

    def check_input(self, *inputs) -> None:
        """Raise a TypeError/ValueError naming this layer for inputs it cannot take (default: none)."""

    def __call__(self, *inputs):
        self.check_input(*inputs)
        settings = config.current()
        fast = kernels.choose(self, inputs[0], settings) if self.seam is not None else None
        if fast is None:
            out, state = self.forward(*inputs), None
        else:
            out, state = fast.forward(self, *inputs)
        if self._forward_hooks:
            hook_input = inputs[0] if len(inputs) == 1 else inputs
            for hook in list(self._forward_hooks.values()):
                result = hook(self, hook_input, out)
                if result is not None:
                    out = result
        if settings.grad_enabled:
            object.__setattr__(self, "_pending", _Pending(fast, state, tuple(getattr(out, "shape", ()))))
        else:   # no backward pass will follow: keep nothing
            object.__setattr__(self, "_pending", None)
            self.drop_saved()
        return out

    def backward(self, grad_out=1.0, input_grad: bool = True):
        """The gradient with respect to the input, accumulating every parameter's ``.grad``.

        ``grad_out`` has the shape of the last forward's output (a loss takes
        the default 1.0). ``input_grad=False``: nobody needs the gradient with
        respect to the input (the images in training); layers that can skip
        it do, and the result may then be None.
        """
        pending = self._pending
        if pending is None:
            raise BackwardBeforeForwardError(
                f"{self._name()}.backward() was called before forward() (or twice for one forward, or "
                f"after a forward under no_grad()): run forward first")
        if isinstance(grad_out, (int, float)):
            if pending.output_shape != ():
                raise ValueError(f"{self!r}.backward: expected a gradient of shape {pending.output_shape} "
                                 f"(the output's), got the number {grad_out}")
        elif tuple(grad_out.shape) != pending.output_shape:
            raise ValueError(f"{self!r}.backward: expected a gradient of shape {pending.output_shape} "
                             f"(the output's), got {tuple(grad_out.shape)}")
        object.__setattr__(self, "_pending", None)
        if pending.implementation is not None:
            grad_in = pending.implementation.backward(self, pending.state, grad_out, input_grad)
        elif self.skips_input_grad:
            grad_in = self.backprop(grad_out, input_grad)
        else:
            grad_in = self.backprop(grad_out)
        self.drop_saved()
        for hook in list(self._backward_hooks.values()):
            result = hook(self, grad_in, grad_out)
            if result is not None:
                grad_in = result
        return grad_in

    def drop_saved(self) -> None:
        """Forget what the last forward kept for backward (``saved_for_backward``)."""
        for name in self.saved_for_backward:
            object.__setattr__(self, name, None)

    def register_forward_hook(self, hook: Callable) -> "RemovableHandle":
        """``hook(module, input, output)`` after every forward; may return a new output."""
        return RemovableHandle(self._forward_hooks, hook)

    def register_full_backward_hook(self, hook: Callable) -> "RemovableHandle":
        """``hook(module, grad_input, grad_output)`` after every backward; may return a new grad_input.

        ``grad_output`` is the upstream gradient the module received,
        ``grad_input`` the gradient it returns (torch passes 1-tuples of
        tensors; here they are the arrays themselves). When the hook runs the
        module's parameter gradients of this backward are already accumulated.
        """
        return RemovableHandle(self._backward_hooks, hook)

    def _name(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ the per-layer protocol
    def output_shape(self, input_shape) -> tuple:
        """The output shape for an input of ``input_shape`` (computed from shapes alone)."""
        raise NotImplementedError(f"{type(self).__name__} has no output_shape rule")

    def multiply_adds(self, input_shape) -> int:
        """Multiply-adds of the matrix products of one forward pass (default: none)."""
        return 0

    def torch_equivalent(self):
        """``(name, args, kwargs)`` of the ``torch.nn`` module computing the same function, or None
        (the torch twin, :mod:`npalexnet.gradcheck.torch_twin`, builds ``torch.nn.<name>(*args, **kwargs)``)."""
        return None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> "OrderedDict[str, object]":
        """Parameters and buffers by dotted name, as arrays (not copies)."""
        state = OrderedDict()
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                state[prefix + name] = p.data
            for name in mod._buffers:
                state[prefix + name] = getattr(mod, name)
        return state

    def load_state_dict(self, state, strict: bool = True) -> "Module":
        """Load arrays (NumPy, CuPy or torch tensors) into this module, in place.

        Keys and shapes are checked before anything is written, so a bad
        dictionary leaves the module untouched. Values are copied and cast to
        each target's dtype and device.
        """
        own = self._state_slots()
        given = {str(k): v for k, v in state.items()}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError(f"{self._name()}.load_state_dict: " + "; ".join(parts))
        converted = {}
        for key, (mod, name, is_param) in own.items():
            if key not in given:
                continue
            value = backend.asnumpy(given[key])
            target = mod._parameters[name].data if is_param else getattr(mod, name)
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{self._name()}.load_state_dict: {key} has shape "
                                 f"{tuple(value.shape)}, expected {tuple(target.shape)}")
            xp = backend.get_array_module(target)
            # A copy, cast to the module's dtype, on the module's device: the
            # module must never alias the caller's arrays.
            converted[key] = xp.array(value, dtype=target.dtype)
        for key, value in converted.items():
            mod, name, is_param = own[key]
            if is_param:
                mod._parameters[name].data = value
            else:
                object.__setattr__(mod, name, value)
        return self

    def _state_slots(self):
        slots = OrderedDict()
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name in mod._parameters:
                slots[prefix + name] = (mod, name, True)
            for name in mod._buffers:
                slots[prefix + name] = (mod, name, False)
        return slots

    # ------------------------------------------------------------------ dtype/device
    def apply_to_arrays(self, fn: Callable) -> "Module":
        """Replace every parameter, gradient and buffer array ``a`` by ``fn(a)``; forget every pending
        backward (what forward kept no longer matches the arrays)."""
        for mod in self.modules():
            for p in mod._parameters.values():
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad = fn(p.grad)
            for name in mod._buffers:
                value = getattr(mod, name)
                if value is not None:
                    object.__setattr__(mod, name, fn(value))
            object.__setattr__(mod, "_pending", None)
            mod.drop_saved()
        return self

    def astype(self, dtype) -> "Module":
        """Cast floating parameters and buffers to ``dtype`` (float32 or float64)."""
        dtype = numpy.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"astype expects a floating dtype (float32 or float64), got {dtype}")
        return self.apply_to_arrays(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)

    def to(self, device: str) -> "Module":
        """Move every parameter and buffer to ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``)."""
        target = backend.resolve_device(device)
        return self.apply_to_arrays(lambda a: backend.to_device(a, target))

    @property
    def device(self) -> str:
        for p in self.parameters():
            return backend.device_of(p.data)
        return "cpu"

    @property
    def dtype(self):
        for p in self.parameters():
            return p.data.dtype
        return numpy.dtype(numpy.float32)

    # ------------------------------------------------------------------ printing
    def summary(self, input_shape) -> str:
        """A table of every layer: output shape, parameters, multiply-adds, activation memory, and
        the implementation that runs; see :func:`npalexnet.nn.summary.summary`."""
        return summary(self, input_shape)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_lines = repr(child).split("\n")
                lines.append(f"  ({name}): " + "\n  ".join(child_lines))
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"


class RemovableHandle:
    """Returned by the hook registration methods; ``remove()`` unregisters."""

    _next_id = 0

    def __init__(self, table, hook):
        self._table = table
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1
        table[self.id] = hook

    def remove(self) -> None:
        self._table.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class Sequential(Module):
    """Children applied in order; named ``"0"``, ``"1"``, ... or by an ``OrderedDict``'s keys, as in torch.

    ``backprop`` walks the children in reverse, feeding each the gradient of
    the one after it (the chain rule, one layer at a time).
    """

    skips_input_grad = True
    runs_children_in_order = True

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            named = list(modules[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(modules)]
        for i, (name, m) in enumerate(named):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential expects Modules, got {type(m).__name__} at position {i}")
            setattr(self, name, m)

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        return items[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backprop(self, grad_out, input_grad: bool = True):
        """The chain rule through the children; ``input_grad=False`` lets the first child skip the
        gradient with respect to the input (None may be returned)."""
        children = list(self._modules.values())
        for i in range(len(children) - 1, -1, -1):
            grad_out = children[i].backward(grad_out, input_grad=input_grad or i > 0)
        return grad_out

    def output_shape(self, input_shape) -> tuple:
        for m in self._modules.values():
            input_shape = m.output_shape(input_shape)
        return tuple(input_shape)

    def torch_equivalent(self):
        return ("Sequential", (), {})
