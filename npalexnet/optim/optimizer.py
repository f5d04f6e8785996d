"""The optimizer base: parameter groups, per-parameter state, state_dict."""

from __future__ import annotations

from .. import backend, config, kernels
from ..nn.module import Parameter


class Optimizer:
    """Holds ``param_groups`` (dicts with ``"params"`` and hyper-parameters) and ``state``.

    As in torch, ``params`` is an iterable of Parameters or of dicts
    (``{"params": [...], "lr": ...}``) overriding the defaults per group;
    schedulers change ``group["lr"]``. A subclass writes its rule as
    ``update(p, grad, state, group)``; one that names a ``seam`` may have it
    run by a faster implementation (:mod:`npalexnet.kernels`), chosen per
    parameter.
    """

    seam: str | None = None

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for group in groups:
            group = {**self.defaults, **group, "params": list(group["params"])}
            for p in group["params"]:
                if not isinstance(p, Parameter):
                    raise TypeError(f"{type(self).__name__} expects npalexnet Parameters, got "
                                    f"{type(p).__name__}")
            self.param_groups.append(group)
        self.state: dict[int, dict] = {}   # by position of the parameter across groups

    def _params(self):
        for group in self.param_groups:
            for p in group["params"]:
                yield group, p

    def zero_grad(self, set_to_none: bool = True) -> None:
        for _, p in self._params():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def step(self) -> None:
        settings = config.current()
        for index, (group, p) in enumerate(self._params()):
            if p.grad is None:
                continue
            state = self.state.setdefault(index, {})
            fast = kernels.choose(self, p, settings) if self.seam is not None else None
            if fast is None:
                self.update(p, p.grad, state, group)
            else:
                fast.update(p, state, group)

    def update(self, p, grad, state, group) -> None:
        """Apply the rule to one parameter (in place)."""
        raise NotImplementedError

    @property
    def lr(self) -> float:
        """The learning rate of the first group."""
        return self.param_groups[0]["lr"]

    # ------------------------------------------------------------------ resuming
    def state_dict(self) -> dict:
        """``{"state": {i: {name: array or number}}, "param_groups": [hyper-parameters]}``."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(groups)} parameter "
                             f"groups given, this optimizer has {len(self.param_groups)}")
        params = [p for _, p in self._params()]
        new_state = {}
        for key, entry in state_dict["state"].items():
            index = int(key)
            if not 0 <= index < len(params):
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter "
                                 f"{index}, but there are only {len(params)}")
            target = params[index].data
            xp = backend.get_array_module(target)
            loaded = {}
            for name, value in entry.items():
                if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                    value = backend.asnumpy(value)
                    if value.shape != target.shape:
                        raise ValueError(f"{type(self).__name__}.load_state_dict: state {name!r} of "
                                         f"parameter {index} has shape {value.shape}, expected "
                                         f"{target.shape}")
                    value = xp.array(value, dtype=target.dtype)
                else:   # a Python number, or a 0-d array (NumPy or on the device: asnumpy copies it)
                    value = backend.asnumpy(value).item()
                loaded[name] = value
            new_state[index] = loaded
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state
