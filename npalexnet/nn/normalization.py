"""Local response normalisation (Section 3.3 of the 2012 paper)."""

from __future__ import annotations

from ._utils import check_array
from .module import Module


def channel_window_sum(a, before: int, after: int):
    """``s[:, c] = sum of a[:, c - before .. c + after]`` over existing channels.

    Zero padding at the channel edges (missing neighbours contribute 0). One
    slice-add per offset, so it is exact and works for any number of
    channels, also fewer than the window.
    """
    s = a.copy()
    channels = a.shape[1]
    for d in range(1, min(before, channels - 1) + 1):
        s[:, d:] += a[:, :-d]
    for d in range(1, min(after, channels - 1) + 1):
        s[:, :-d] += a[:, d:]
    return s


class LocalResponseNorm(Module):
    r"""Normalisation over neighbouring channels, with torch's exact semantics.

    Shapes: input x: (N, C, ...) -> output y of the same shape.

    Forward, with ``n = size`` and the window of channel c running from
    ``c - n//2`` to ``c + (n-1)//2`` (zero padding at the edges):

    .. math:: s_c = k + \frac{\alpha}{n} \sum_{c' \in \mathrm{win}(c)} x_{c'}^2,
              \qquad y_c = x_c\, s_c^{-\beta}

    Backward. :math:`x_j` appears in its own output *and* inside the window
    sum of every channel whose window contains j, so the window sum
    reappears, over the mirrored window ``j - (n-1)//2 .. j + n//2``:

    .. math:: \partial x_j = dY_j\, s_j^{-\beta} - \frac{2\alpha\beta}{n}\, x_j
              \sum_{c:\ j \in \mathrm{win}(c)} dY_c\, x_c\, s_c^{-\beta-1}

    The paper's constants: ``b = a / (k + alpha_paper * sum a^2)^beta`` with
    k=2, n=5, alpha_paper=1e-4, beta=0.75 and alpha *not* divided by n. torch
    divides by n, so the paper's layer is
    ``LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)``, which
    :meth:`from_paper` builds.

    Forward keeps x alone; backward recomputes the scales s from it (one more
    window sum, instead of keeping two arrays of x's size). Fast paths (seam
    ``"lrn"``): numba kernels on the CPU, CUDA kernels on a GPU.
    """

    seam = "lrn"
    saved_for_backward = ("x",)

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        if size < 1:
            raise ValueError(f"LocalResponseNorm: size must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        self.x = None

    @classmethod
    def from_paper(cls, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        """The layer with the paper's meaning of alpha (not divided by n)."""
        return cls(size=n, alpha=alpha * n, beta=beta, k=k)

    def scale(self, x):
        """s = k + alpha/n * (the window sum of x^2 over channels)."""
        n = self.size
        return self.k + self.alpha / n * channel_window_sum(x * x, n // 2, (n - 1) // 2)

    def forward(self, x):
        self.x = x
        return x * self.scale(x) ** -self.beta

    def backprop(self, grad_out):
        x, n = self.x, self.size
        s = self.scale(x)
        s_pow = s ** -self.beta
        window = channel_window_sum(grad_out * x * s_pow / s, (n - 1) // 2, n // 2)   # the mirrored window
        return grad_out * s_pow - 2.0 * self.alpha * self.beta / n * x * window

    def check_input(self, x):
        if getattr(x, "ndim", 0) < 3:
            check_array(self, x, 3, "(N, C, ...) with at least 3 dimensions")

    def torch_equivalent(self):
        return ("LocalResponseNorm", (self.size, self.alpha, self.beta, self.k), {})

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
