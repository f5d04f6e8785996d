"""Learning-rate schedules: step decay, divide-on-plateau, cosine, warm-up + linear or cosine decay.

Each scheduler sets ``group["lr"]`` of its optimizer. All but the plateau
rule are closed-form functions of the step count, so a resumed run gets
exactly the learning rates of an uninterrupted one from ``state_dict()``.
Call ``step()`` once per epoch or once per batch, as the schedule was sized.
"""

from __future__ import annotations

import math

from .optimizer import Optimizer


class LRScheduler:
    """Base: ``base_lrs`` from the groups, ``last_epoch`` counts ``step()`` calls."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} expects an npalexnet optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.set_step(0)

    def lr_at(self, step: int, base_lr: float) -> float:
        raise NotImplementedError

    def set_step(self, step: int) -> None:
        """Jump to ``step`` (``step()`` calls so far) and set the learning rates of that step."""
        self.last_epoch = int(step)
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_epoch, base)

    def step(self) -> None:
        self.set_step(self.last_epoch + 1)

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
        self._apply()


class ConstantLR(LRScheduler):
    """The base learning rate throughout."""

    def lr_at(self, step, base_lr):
        return base_lr


class StepLR(LRScheduler):
    """``lr = base * gamma ** (step // step_size)`` (torch.optim.lr_scheduler.StepLR)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, step, base_lr):
        return base_lr * self.gamma ** (step // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base - eta_min) (1 + cos(pi t / T_max)) / 2``, constant after T_max."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, step, base_lr):
        t = min(step, self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class WarmupLinearLR(LRScheduler):
    """One cycle: linear warm-up to the base lr, then linear decay to zero (or to a floor, then held).

    For update ``t`` (0-based) of ``total_steps`` with ``W`` warm-up steps:
    ``lr = base (t+1)/W`` while ``t < W``, then ``base (m + (1 - m) decay(f))``
    with ``f = (t-W)/(E-W)`` the fraction of the decay done, ``m`` = ``floor``
    and ``E`` = ``decay_end``; ``base m`` from ``E`` to ``T``, and 0 after ``T``.
    Here ``decay(f) = 1 - f``; :class:`WarmupCosineLR` changes only that.
    ``warmup`` and ``decay_end`` are step counts (int) or fractions of
    ``total_steps`` (float < 1). The defaults (``floor=0``, ``decay_end=T``)
    decay to zero at the last step; a floor held to the end is the constant
    rate of stochastic weight averaging (Izmailov et al. 2018; torch's
    ``SWALR`` anneals to it the same way).
    """

    def __init__(self, optimizer, total_steps: int, warmup=0.15, *, floor: float = 0.0, decay_end=None):
        name = type(self).__name__
        if total_steps < 1:
            raise ValueError(f"{name}: total_steps must be >= 1, got {total_steps}")
        warmup_steps = _steps(warmup, total_steps)
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"{name}: warm-up of {warmup_steps} steps does not fit in {total_steps} steps")
        end = total_steps if decay_end is None else _steps(decay_end, total_steps)
        if not warmup_steps <= end <= total_steps:
            raise ValueError(f"{name}: the decay must end between the warm-up's end ({warmup_steps}) and the "
                             f"last step ({total_steps}), got {end}")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"{name}: floor must be a fraction of the peak in [0, 1], got {floor}")
        self.total_steps, self.warmup_steps = int(total_steps), warmup_steps
        self.floor, self.decay_end = float(floor), end
        super().__init__(optimizer)

    @staticmethod
    def decay(f: float) -> float:
        """The learning rate, as a fraction of the peak, after a fraction ``f`` of the decay."""
        return 1.0 - f

    def lr_at(self, step, base_lr):
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        if step >= self.total_steps:
            return 0.0
        if step >= self.decay_end:
            return base_lr * self.floor
        f = (step - self.warmup_steps) / (self.decay_end - self.warmup_steps)
        return base_lr * (self.floor + (1.0 - self.floor) * self.decay(f))


def _steps(value, total_steps: int) -> int:
    """A step count given as an int, or as a fraction (float < 1) of ``total_steps``."""
    return int(round(value * total_steps)) if isinstance(value, float) and value < 1 else int(value)


class WarmupCosineLR(WarmupLinearLR):
    """Linear warm-up to the base lr, then a half cosine to zero: ``decay(f) = (1 + cos(pi f)) / 2``.

    The cosine holds the rate near its peak longer and spends more of the
    steps near zero than the linear decay (timm's ``cosine`` with warm-up;
    ``transformers.get_cosine_schedule_with_warmup``).
    """

    @staticmethod
    def decay(f: float) -> float:
        return (1.0 + math.cos(math.pi * f)) / 2


class ReduceLROnPlateau:
    """The paper's rule (Section 5): divide the learning rate by 10 when the
    validation metric stops improving.

    ``step(metric)`` once per epoch; after more than ``patience`` epochs
    without an improvement larger than ``threshold`` (relative), every group's
    lr is multiplied by ``factor`` (not below ``min_lr``), at most
    ``max_reductions`` times (the paper's learning rate "was reduced three
    times prior to termination"; None: no limit). ``mode="max"`` for
    accuracy, ``"min"`` for a loss.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "max", factor: float = 0.1,
                 patience: int = 2, threshold: float = 1e-4, min_lr: float = 0.0,
                 max_reductions: int | None = None):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        if max_reductions is not None and max_reductions < 0:
            raise ValueError(f"ReduceLROnPlateau: max_reductions must be >= 0, got {max_reductions}")
        self.threshold, self.min_lr = float(threshold), float(min_lr)
        self.max_reductions, self.reductions = max_reductions, 0
        self.best = None
        self.bad_epochs = 0
        self.last_epoch = 0

    def _improved(self, metric: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return metric > self.best * (1 + self.threshold) if self.best > 0 else metric > self.best
        return metric < self.best * (1 - self.threshold) if self.best > 0 else metric < self.best

    def step(self, metric: float) -> None:
        metric = float(metric)
        self.last_epoch += 1
        if self._improved(metric):
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        spent = self.max_reductions is not None and self.reductions >= self.max_reductions
        if self.bad_epochs > self.patience and not spent:
            for group in self.optimizer.param_groups:
                group["lr"] = max(group["lr"] * self.factor, self.min_lr)
            self.bad_epochs = 0
            self.reductions += 1

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
