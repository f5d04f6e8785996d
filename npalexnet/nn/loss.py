"""Softmax cross-entropy with label smoothing, fused with its gradient."""

from __future__ import annotations

from ..backend import get_array_module
from ._utils import check_array
from .module import Module


class CrossEntropyLoss(Module):
    r"""Mean (or summed) cross-entropy between ``softmax(logits)`` and smoothed targets.

    Shapes: logits (N, K) float; targets either (N,) integer class indices in
    [0, K), or (N, K) float class probabilities (as torch's, e.g. the soft
    targets of distillation or mixup; the logits' dtype). Returns a 0-d array
    (call ``float()`` on it for a Python number).

    With smoothing :math:`\varepsilon` the target distribution is
    :math:`q = (1-\varepsilon)\,\mathrm{onehot}(t) + \varepsilon/K` for class
    indices and :math:`q = (1-\varepsilon)\,t + \varepsilon/K` for
    probabilities, and, with a log-softmax computed stably by subtracting each
    row's maximum,

    .. math:: \ell_n = -\textstyle\sum_k q_{nk} \log p_{nk}, \qquad
              p = \mathrm{softmax}(z)

    Backward (the reason softmax and cross-entropy are fused): for the mean
    :math:`\partial z_{nk} = (p_{nk} \textstyle\sum_j q_{nj} - q_{nk}) / N`,
    for the sum without the :math:`1/N`, times the upstream scalar gradient;
    a target row that sums to one (every class index does) gives the familiar
    :math:`(p - q) / N`. Finite for logits of any magnitude (log-sum-exp never
    exponentiates a positive number).

    Every call checks that class indices lie in [0, K) (an index outside would
    read another row's value: CuPy wraps indices around instead of raising).
    ``check_targets=False`` leaves that to the caller, who must have checked
    the labels once (the training program: :class:`npalexnet.data.Dataset`
    checks each split when it is loaded); on a GPU the per-call check is a
    device-to-host synchronisation in every step. Probabilities are taken as
    given (as torch takes them): their values are not checked.
    """

    saved_for_backward = ("log_p", "targets")

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean", check_targets: bool = True):
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"CrossEntropyLoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.label_smoothing, self.reduction = float(label_smoothing), reduction
        self.check_targets = bool(check_targets)
        self.log_p = self.targets = None

    def extra_repr(self) -> str:
        s = f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"
        return s if self.check_targets else s + ", check_targets=False"

    def forward(self, logits, targets):
        xp = get_array_module(logits, targets)
        n, k = logits.shape
        self.targets = xp.asarray(targets)
        shifted = logits - logits.max(axis=1, keepdims=True)
        self.log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        eps = self.label_smoothing
        if self.targets.ndim == 2:     # probabilities: q = (1 - eps) t + eps / K, row by row
            losses = -(1.0 - eps) * (self.targets * self.log_p).sum(axis=1)
        else:
            losses = -(1.0 - eps) * self.log_p[xp.arange(n), self.targets]
        if eps:
            losses -= eps * self.log_p.mean(axis=1)
        return losses.sum() if self.reduction == "sum" else losses.mean()

    def backprop(self, grad=1.0):
        """``dlogits`` (N, K); ``grad`` is the upstream gradient of the scalar loss."""
        xp = get_array_module(self.log_p)
        n, k = self.log_p.shape
        eps = self.label_smoothing
        p = xp.exp(self.log_p)
        if self.targets.ndim == 2:     # p * sum(q) - q, with sum(q) = (1 - eps) sum(t) + eps
            mass = (1.0 - eps) * self.targets.sum(axis=1, keepdims=True) + eps
            dz = p * mass - (1.0 - eps) * self.targets - eps / k
        else:
            dz = p - eps / k
            dz[xp.arange(n), self.targets] -= 1.0 - eps
        scale = grad / n if self.reduction == "mean" else grad
        return dz * (dz.dtype.type(scale) if isinstance(scale, float) else scale)

    def check_input(self, logits, targets):
        check_array(self, logits, 2, "(N, num_classes) of logits")
        xp = get_array_module(logits, targets)
        n, k = logits.shape
        targets = xp.asarray(targets)
        if targets.shape not in ((n,), (n, k)):
            raise ValueError(f"{self!r}: expected targets of shape ({n},) (class indices) or ({n}, {k}) "
                             f"(class probabilities) for logits of shape {tuple(logits.shape)}, "
                             f"got {tuple(targets.shape)}")
        if targets.ndim == 2:
            if targets.dtype != logits.dtype:
                raise TypeError(f"{self!r}: class probabilities must have the logits' dtype {logits.dtype}, "
                                f"got {targets.dtype}")
            return
        if targets.dtype.kind not in "iu":
            raise TypeError(f"{self!r}: targets must be integer class indices or (N, K) class probabilities, "
                            f"got dtype {targets.dtype}")
        if self.check_targets and n and bool(((targets < 0) | (targets >= k)).any()):
            bad = targets[(targets < 0) | (targets >= k)]
            raise ValueError(f"{self!r}: targets must be in [0, {k}), got value {int(bad[0])}")

    def output_shape(self, input_shape):
        return ()

    def torch_equivalent(self):
        return ("CrossEntropyLoss", (), {"label_smoothing": self.label_smoothing, "reduction": self.reduction})
