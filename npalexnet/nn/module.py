"""``Parameter``, ``Module`` and ``Sequential``: the torch-shaped skeleton.

A module keeps, during ``forward``, exactly what its ``backward`` needs, and
``backward(grad_out)`` returns the gradient with respect to its input while
*accumulating* into each parameter's ``.grad`` (as ``torch`` does, so a
gradient is summed over calls until ``zero_grad()``).

Attributes are registered the way torch registers them: assigning a
``Parameter`` or a ``Module`` to an attribute records it, and buffers (state
that is not trained, such as BatchNorm's running statistics) are declared
with ``register_buffer``. Names in ``named_parameters()`` and
``state_dict()`` are dotted paths identical to torch's for the same
architecture, so torch weights load directly.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from typing import Callable, Iterator

import numpy

from .. import backend
from ..kernels import workspace
from . import grad_mode


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
            and after ``zero_grad(set_to_none=True)``.

    Gradient storage is recycled: the GEMM of the first contribution of a
    step writes straight into an array of the shared buffer pool
    (:mod:`npalexnet.kernels.workspace`), in practice the one ``zero_grad()``
    released, instead of a new one. A fresh 64 MB array costs more than the
    GEMM that fills it on a CPU (first-touch page faults), and fc7's weight
    gradient is that size. The pool hands out only what nothing else refers
    to, so a gradient a user kept from an earlier step is never overwritten
    (torch's ``set_to_none`` semantics).
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
        """Add ``grad`` to ``.grad`` (adopting it on first use).

        Callers pass a freshly computed array that nothing else holds, so it
        can be adopted without a copy (a copy of fc6's gradient alone is
        150 MB per step).
        """
        if grad.shape != self.data.shape:
            raise ValueError(f"gradient of shape {grad.shape} for a parameter of shape {self.data.shape}")
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def accumulate_matmul(self, a, b) -> None:
        """Add the product ``a @ b`` (any shape of the parameter's size) to ``.grad``.

        The first contribution of a step is written by the GEMM itself into a
        pooled array (see the class docstring); later ones are added to it.
        """
        xp = backend.get_array_module(a, b)
        out_shape = a.shape[:-1] + b.shape[-1:]
        if int(numpy.prod(out_shape)) != self.data.size:
            raise ValueError(f"gradient of shape {out_shape} for a parameter of shape {self.data.shape}")
        if self.grad is not None:
            self.grad += (a @ b).reshape(self.data.shape)
            return
        grad = workspace.empty(self.data.shape, self.data.dtype, self.data)
        xp.matmul(a, b, out=grad.reshape(out_shape))
        self.grad = grad

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype})"


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(x)`` and ``backward(grad_out)``.
    ``__call__`` runs ``forward`` and any forward hooks (a hook gets the input,
    or the tuple of inputs when there are several, e.g. a loss's
    ``(logits, targets)``). ``backward`` fires the backward hooks whoever
    calls it (the user on the model, or a container on its children), so
    hooks see every layer and the model itself, as torch's do.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_in_backward", False)

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

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
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
                p.grad = None   # its array goes back to the buffer pool, unless someone holds it
            else:
                p.grad[...] = 0

    # ------------------------------------------------------------------ forward/backward
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *inputs):
        out = self.forward(*inputs)
        if self._forward_hooks:
            hook_input = inputs[0] if len(inputs) == 1 else inputs
            for hook in list(self._forward_hooks.values()):
                result = hook(self, hook_input, out)
                if result is not None:
                    out = result
        return out

    def __init_subclass__(cls, **kwargs):
        # Every ``backward`` a subclass defines fires the module's backward
        # hooks, however it is reached: ``model.backward(g)`` called by the
        # user, a container's ``child.run_backward(g)``, or ``super().backward``
        # (the hooks fire once, at the outermost call).
        super().__init_subclass__(**kwargs)
        raw = cls.__dict__.get("backward")
        if raw is not None and not getattr(raw, "_fires_hooks", False):
            cls.backward = _backward_firing_hooks(raw)

    def run_backward(self, grad_out, input_grad: bool = True):
        """``backward`` plus the registered backward hooks (what containers call).

        Kept for compatibility: ``backward`` itself now fires the hooks.
        """
        return self.backward(grad_out, input_grad=input_grad)

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

    def _need_cache(self, cache, what: str = "forward"):
        """Raise the standard error for a backward without its forward."""
        if cache is None:
            raise BackwardBeforeForwardError(f"{self._name()}.backward() was called before {what}() "
                               "(or twice for one forward, or after a forward under no_grad()): "
                               "run forward first")
        return cache

    @staticmethod
    def _keep(cache):
        """What a forward stores for backward: ``cache``, or None under :func:`no_grad`."""
        return cache if grad_mode.is_grad_enabled() else None

    def _name(self) -> str:
        return type(self).__name__

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
    def _apply(self, fn: Callable, buffers_too: Callable = None) -> "Module":
        for mod in self.modules():
            for p in mod._parameters.values():
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad = fn(p.grad)
            for name in mod._buffers:
                value = getattr(mod, name)
                if value is not None:
                    object.__setattr__(mod, name, (buffers_too or fn)(value))
            mod._on_apply()
        return self

    def _on_apply(self) -> None:
        """Hook for modules that keep derived state (caches) to drop it."""

    def astype(self, dtype) -> "Module":
        """Cast floating parameters and buffers to ``dtype`` (float32 or float64)."""
        dtype = numpy.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"astype expects a floating dtype (float32 or float64), got {dtype}")

        def cast(a):
            return a.astype(dtype) if a.dtype.kind == "f" else a

        return self._apply(cast)

    def to(self, device: str) -> "Module":
        """Move every parameter and buffer to ``"cpu"`` or ``"cuda"``."""
        target = backend.resolve_device(device)
        return self._apply(lambda a: backend.to_device(a, target))

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
        """A table of every layer: output shape, parameters, multiply-adds, activation memory.

        ``input_shape`` is (N, C, H, W) or (C, H, W); computed from shapes
        alone (see :mod:`npalexnet.inspect.summary`). Returns a string.
        """
        from ..inspect.summary import summary   # here: npalexnet.inspect imports nn
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


def _backward_firing_hooks(raw):
    """Wrap a subclass's ``backward`` so that it fires the backward hooks once."""
    params = list(inspect.signature(raw).parameters.values())[1:]
    default = params[0].default if params and params[0].default is not inspect.Parameter.empty else None
    takes_input_grad = any(p.name == "input_grad" or p.kind is p.VAR_KEYWORD for p in params)

    @functools.wraps(raw)
    def backward(self, *args, **kwargs):
        if not takes_input_grad:
            # ``input_grad=False`` is a hint that the caller needs no input gradient; a layer that
            # cannot skip it computes it anyway.
            kwargs.pop("input_grad", None)
        if self._in_backward or not self._backward_hooks:
            return raw(self, *args, **kwargs)
        object.__setattr__(self, "_in_backward", True)
        try:
            grad_in = raw(self, *args, **kwargs)
        finally:
            object.__setattr__(self, "_in_backward", False)
        if args:
            grad_out = args[0]
        elif params and params[0].name in kwargs:
            grad_out = kwargs[params[0].name]
        else:
            grad_out = default
        for hook in list(self._backward_hooks.values()):
            result = hook(self, grad_in, grad_out)
            if result is not None:
                grad_in = result
        return grad_in

    backward._fires_hooks = True
    return backward


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
    """Children applied in order; named ``"0"``, ``"1"``, ... as in torch.

    ``backward`` walks the children in reverse, feeding each the gradient of
    the one after it (the chain rule, one layer at a time).
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential expects Modules, got {type(m).__name__} at position {i}")
            setattr(self, str(i), m)

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

    def backward(self, grad_out, input_grad: bool = True):
        """The chain rule through the children; ``input_grad=False`` lets the
        first child skip the gradient with respect to the input (None may be returned)."""
        return backward_chain(list(self._modules.values()), grad_out, input_grad)


def backward_chain(stages, grad_out, input_grad: bool = True):
    """Back through ``stages`` (a forward order) from ``grad_out``.

    ``input_grad=False``: the first stage is told that nobody needs the
    gradient with respect to its input (a convolution on the images then
    skips a GEMM and a col2im); the result may be None.
    """
    for i in range(len(stages) - 1, -1, -1):
        grad_out = stages[i].backward(grad_out, input_grad=input_grad or i > 0)
    return grad_out
