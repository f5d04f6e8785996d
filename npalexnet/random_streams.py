"""Counter-based random numbers keyed by (seed, epoch, sample index, stream, element).

Why: under data-parallel training a sample may be processed by any rank, in
any position of any local batch. A sequential generator (``numpy.random``)
hands out numbers in call order, so the dropout mask or the crop a sample gets
would depend on how the global batch was split. Here a number is a pure
function of *what* it is for, never of *when* it is drawn:

.. math:: u = \\mathrm{hash}(\\text{seed}, \\text{epoch}, \\text{sample}, \\text{stream}, \\text{element}) / 2^{64}

so one process with a global batch of 128 and four processes with 32 each draw
bit-identical masks and augmentations. ``sample`` is the sample's index in the
training set (its identity, not its position in the batch).

The hash is the splitmix64 finaliser (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014; the mixing constants are
Stafford's "Mix13"), used as a counter-based generator: a row key is folded
from the key fields one at a time, and element ``j`` of that row is
``mix(key + (j + 1) * gamma)``, exactly splitmix64's ``j``-th output from state
``key``. It is written as uint64 array code (xor, shift, wrapping multiply),
so NumPy and CuPy produce the same bits.

Notation: n samples in the (local) batch, F numbers per sample.

Three ways in, one scheme:

* the functions :func:`row_keys`, :func:`uniform` and :func:`integers` take
  the key fields explicitly (augmentation: crop offsets, flips; the epoch
  order, :func:`permutation`);
* the context :func:`sample_keys` tells the layers which samples the current
  batch holds; :class:`~npalexnet.nn.Dropout` then draws its mask rows from the
  hash (one stream per dropout call inside the context, in forward order);
* the library stream, seeded by :func:`manual_seed`, for everything that is
  not keyed by a sample: initial weights (:func:`library_uniform`,
  :func:`library_normal`) and dropout outside :func:`sample_keys`. Its k-th
  draw is keyed by (seed, k), so its state is two integers
  (:func:`get_state`), the same on NumPy and CuPy.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

import numpy

from .backend import get_array_module

_GAMMA = 0x9E3779B97F4A7C15          # 2^64 / golden ratio, splitmix64's increment
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1

#: Stream ids below this are free for callers (augmentation uses 1, 2, ...);
#: dropout calls inside :func:`sample_keys` use ``DROPOUT_STREAM_BASE + k``.
DROPOUT_STREAM_BASE = 1 << 20


def _mix(z, xp):
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic), in place: ``z`` is overwritten
    and returned. (Large draws, a dropout mask of a million numbers, are memory-bound: writing into one
    scratch array instead of a new one per operation keeps them a few passes over the data.)"""
    u = xp.uint64
    scratch = xp.empty_like(z)
    for shift, multiplier in ((30, _M1), (27, _M2), (31, None)):   # z ^= z >> s; z *= m
        xp.right_shift(z, u(shift), out=scratch)
        xp.bitwise_xor(z, scratch, out=z)
        if multiplier is not None:
            xp.multiply(z, u(multiplier), out=z)
    return z


def _mix_int(z: int) -> int:
    """The same finaliser on a Python int (for the scalar part of a key)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _fold(key: int, value: int) -> int:
    return _mix_int(key + _GAMMA + (value & _MASK64))


def row_keys(seed: int, epoch: int, indices, stream: int, xp=None):
    """One uint64 key per sample: ``hash(seed, epoch, index, stream)``.

    Args:
        seed, epoch, stream: non-negative Python ints.
        indices: (n,) integer array (NumPy or CuPy) or sequence of sample indices.
        xp: the array module of the result (default: that of ``indices``).
    Returns:
        (n,) uint64 array.
    """
    if xp is None:
        xp = get_array_module(indices) if hasattr(indices, "dtype") else numpy
    scalar = _fold(_fold(_mix_int(int(seed)), int(epoch)), int(stream))
    idx = xp.asarray(indices).astype(xp.int64).astype(xp.uint64)
    first = _mix(idx + xp.uint64(_GAMMA), xp)
    return _mix(xp.bitwise_xor(first, xp.uint64(scalar), out=first), xp)


def bits(keys, count: int):
    """(n, count) uint64 words: element ``j`` of row ``i`` is splitmix64 output ``j`` from ``keys[i]``."""
    xp = get_array_module(keys)
    counters = (xp.arange(1, count + 1, dtype=xp.uint64) * xp.uint64(_GAMMA))
    return _mix(keys.reshape(-1, 1) + counters.reshape(1, -1), xp)


def uniform_from_keys(keys, shape, dtype=numpy.float64):
    """Uniform numbers in [0, 1) of shape ``(n,) + shape`` from per-row keys.

    float64 takes the top 53 bits of each word, float32 the top 24, so every
    value is exact in its dtype and strictly below 1.
    """
    xp = get_array_module(keys)
    shape = tuple(int(s) for s in shape)
    count = int(numpy.prod(shape, dtype=numpy.int64))
    words = bits(keys, count)
    dtype = numpy.dtype(dtype)
    if dtype == numpy.float32:
        u = xp.right_shift(words, xp.uint64(40), out=words).astype(xp.float32)
        u *= xp.float32(2.0 ** -24)
    else:
        u = xp.right_shift(words, xp.uint64(11), out=words).astype(xp.float64)
        u *= 2.0 ** -53
        u = u.astype(dtype, copy=False)
    return u.reshape((keys.shape[0],) + shape)


def uniform(seed: int, epoch: int, indices, stream: int, shape=(), dtype=numpy.float64, xp=None):
    """Uniform [0, 1) numbers of shape ``(n,) + shape`` for samples ``indices``."""
    return uniform_from_keys(row_keys(seed, epoch, indices, stream, xp), shape, dtype)


def normal(seed: int, epoch: int, indices, stream: int, shape=(), dtype=numpy.float64, xp=None):
    """Standard normal numbers of shape ``(n,) + shape`` for samples ``indices`` (e.g. the paper's
    colour augmentation).

    Box-Muller on two uniforms of the stream per number:
    :math:`z = \\sqrt{-2 \\ln(1 - u_1)} \\cos(2 \\pi u_2)`, with :math:`1 - u_1 \\in (0, 1]`
    so the logarithm is finite. The uniforms are the same bits on NumPy and
    CuPy; the logarithm and cosine may differ in the last bit between the two
    libraries' maths, so draw on one of them (the host) when that matters.
    """
    shape = tuple(int(s) for s in shape)
    u = uniform(seed, epoch, indices, stream, (2,) + shape, numpy.float64, xp)
    xp = get_array_module(u)
    z = xp.sqrt(-2.0 * xp.log1p(-u[:, 0])) * xp.cos(2.0 * numpy.pi * u[:, 1])
    return z.astype(dtype, copy=False)


def integers(seed: int, epoch: int, indices, stream: int, high: int, shape=(), xp=None):
    """Integers in ``[0, high)`` of shape ``(n,) + shape`` (e.g. crop offsets, flips).

    ``floor(u * high)`` with a 53-bit ``u``: the bias is below ``high / 2^53``.
    """
    if high < 1:
        raise ValueError(f"integers: high must be >= 1, got {high}")
    u = uniform(seed, epoch, indices, stream, shape, numpy.float64, xp)
    xp = get_array_module(u)
    return xp.minimum((u * high).astype(xp.int64), high - 1)


#: Pairs of uniforms :func:`beta` draws per number: Johnk's rejection accepts a pair with probability
#: Gamma(a+1) Gamma(b+1) / Gamma(a+b+1), at least 1/6 for a, b <= 2 (:data:`BETA_MAX`), so all of them
#: are rejected with probability below (5/6)^512, about 1e-41.
BETA_PAIRS = 512
#: The largest parameter :func:`beta` takes (its acceptance falls fast above: 1/70 at a = b = 4).
BETA_MAX = 2.0


def beta(seed: int, epoch: int, indices, stream: int, a: float, b: float, xp=None):
    """Beta(a, b) numbers in [0, 1], one per sample of ``indices`` (e.g. mixup's mixing weight; the
    distribution's (0, 1) rounded: with a small ``a`` some are 1.0 or a subnormal).

    Johnk's algorithm (1964): for uniform ``u, v`` in (0, 1], ``x = u^(1/a)`` and ``y = v^(1/b)``, the
    first pair with ``x + y <= 1`` gives ``x / (x + y)``, Beta(a, b) distributed. Each sample has a
    fixed block of :data:`BETA_PAIRS` pairs from its key, so the number is a function of (seed, epoch,
    index, stream) like every other draw here. It works in logarithms (``log x = log u / a``), which
    keeps small parameters (``u^(1/0.05)`` underflows) exact.

    Args:
        a, b: the shape parameters, in (0, :data:`BETA_MAX`].
    Returns:
        (n,) float64.
    """
    if not (0 < a <= BETA_MAX and 0 < b <= BETA_MAX):
        raise ValueError(f"beta: the parameters must be in (0, {BETA_MAX:g}], got a={a}, b={b}")
    u = uniform(seed, epoch, indices, stream, (2, BETA_PAIRS), numpy.float64, xp)
    xp = get_array_module(u)
    log_x, log_y = xp.log1p(-u[:, 0]) / a, xp.log1p(-u[:, 1]) / b   # 1 - u is in (0, 1]: finite
    top = xp.maximum(log_x, log_y)
    log_sum = top + xp.log(xp.exp(log_x - top) + xp.exp(log_y - top))   # log(x + y)
    accepted = log_sum <= 0.0
    if not bool(accepted.any(axis=1).all()):
        raise RuntimeError("beta: no pair of the block was accepted (probability below 1e-41)")
    first = xp.argmax(accepted, axis=1)
    rows = xp.arange(u.shape[0])
    return xp.exp(log_x[rows, first] - log_sum[rows, first])


# ----------------------------------------------------------------------------
# The per-batch context read by the layers
# ----------------------------------------------------------------------------

@dataclass
class SampleKeys:
    """The samples of the current (local) batch, for the layers that draw random numbers.

    Attributes:
        indices: (n,) host int64 array, the global (training-set) index of each
            row of the batch, in batch order.
        seed, epoch: the run's seed and the current epoch.
        calls: how many streams have been handed out in this context.
    """

    indices: numpy.ndarray
    seed: int
    epoch: int
    calls: int = field(default=0)

    def next_stream(self) -> int:
        """A fresh stream id; the k-th random layer call in a forward gets the k-th id."""
        stream = DROPOUT_STREAM_BASE + self.calls
        self.calls += 1
        return stream

    def next_row_keys(self, rows: int, xp):
        """The row keys of the next stream, one per sample of the batch (``rows`` must be the batch's)."""
        if rows != self.indices.shape[0]:
            raise ValueError(f"sample_keys: the batch has {rows} rows but the context holds "
                             f"{self.indices.shape[0]} sample indices")
        return row_keys(self.seed, self.epoch, xp.asarray(self.indices), self.next_stream(), xp)


_active: contextvars.ContextVar[SampleKeys | None] = contextvars.ContextVar("npalexnet_sample_keys", default=None)


@contextlib.contextmanager
def sample_keys(indices, seed: int, epoch: int):
    """Within this block, random layers key their numbers by sample (see the module doc).

    Usage, for one training step::

        with random_streams.sample_keys(batch_indices, seed, epoch):
            loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())

    Nesting replaces the outer context for the duration of the inner one.
    """
    indices = numpy.asarray(indices)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise ValueError(f"sample_keys: indices must be a 1-D integer array, got {indices.dtype} "
                         f"of shape {indices.shape}")
    keys = SampleKeys(indices.astype(numpy.int64), int(seed), int(epoch))
    token = _active.set(keys)
    try:
        yield keys
    finally:
        _active.reset(token)


def active() -> SampleKeys | None:
    """The current :class:`SampleKeys`, or ``None`` outside :func:`sample_keys`."""
    return _active.get()


# ----------------------------------------------------------------------------
# The library stream: initial weights, dropout outside sample_keys
# ----------------------------------------------------------------------------

#: The stream id of the library stream's draws.
LIBRARY_STREAM = 1 << 21


@dataclass
class _LibraryStream:
    seed: int = 0
    draws: int = 0


_library = _LibraryStream(seed=int(numpy.random.SeedSequence().entropy % (1 << 63)))


def manual_seed(seed: int) -> None:
    """Seed the library stream: the same seed gives the same initial weights and the same
    un-keyed dropout masks, on NumPy and CuPy alike."""
    _library.seed, _library.draws = int(seed), 0


def get_state() -> dict:
    """The library stream's state (JSON-serialisable), for checkpoints."""
    return {"seed": _library.seed, "draws": _library.draws}


def set_state(state: dict) -> None:
    """Restore a state from :func:`get_state`."""
    _library.seed, _library.draws = int(state["seed"]), int(state["draws"])


def next_library_keys(rows: int, xp=numpy):
    """Row keys of the library stream's next draw: row i keyed by (seed, draw, i)."""
    draw = _library.draws
    _library.draws += 1
    return row_keys(_library.seed, draw, xp.arange(rows, dtype=xp.int64), LIBRARY_STREAM, xp)


def library_uniform(shape, dtype=numpy.float64, xp=numpy):
    """Uniform [0, 1) numbers of ``shape`` from the library stream (one draw)."""
    shape = tuple(int(s) for s in shape) or (1,)
    u = uniform_from_keys(next_library_keys(shape[0], xp), shape[1:], dtype)
    return u.reshape(shape)


def library_normal(shape, xp=numpy):
    """Standard normal float64 numbers of ``shape`` from the library stream (Box-Muller, one draw)."""
    shape = tuple(int(s) for s in shape) or (1,)
    u = library_uniform((shape[0], 2 * int(numpy.prod(shape[1:], dtype=numpy.int64))), numpy.float64, xp)
    u1, u2 = u[:, 0::2], u[:, 1::2]
    return (xp.sqrt(-2.0 * xp.log1p(-u1)) * xp.cos(2.0 * numpy.pi * u2)).reshape(shape)


# ----------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------

#: Streams of the augmentation numbers (dropout uses DROPOUT_STREAM_BASE and up).
CROP_Y_STREAM, CROP_X_STREAM, FLIP_STREAM = 1, 2, 3
#: The stream of the paper's colour augmentation coefficients (Section 4.1).
LIGHTING_STREAM = 4
#: The stream of the epoch order (:func:`permutation`).
ORDER_STREAM = 0
#: The streams of mixup and CutMix (:mod:`npalexnet.data.mixing`): each image's partner, and per step which
#: of the two blends, its weight and CutMix's box centre.
MIX_PARTNER_STREAM, MIX_CHOICE_STREAM, MIX_WEIGHT_STREAM, MIX_BOX_STREAM = 5, 6, 7, 8
#: The stream of random erasing's numbers (:func:`npalexnet.data.augment.erase_params`).
ERASE_STREAM = 9


#: How the flips change from epoch to epoch (:func:`crop_flip_params`).
FLIP_SCHEDULES = ("random", "alternating")


def check_flip_schedule(flip_schedule: str) -> str:
    """``flip_schedule`` if it is one of :data:`FLIP_SCHEDULES`; else ValueError naming them."""
    if flip_schedule not in FLIP_SCHEDULES:
        raise ValueError(f"unknown flip schedule {flip_schedule!r}: expected one of {', '.join(FLIP_SCHEDULES)}")
    return flip_schedule


def crop_flip_params(seed: int, epoch: int, indices, pad: int = 0, flip: bool = True, positions: int | None = None,
                     flip_schedule: str = "random"):
    """Random-crop origins and flips for the samples ``indices`` (host arrays).

    ``flip_schedule``: ``"random"`` flips each sample with probability 1/2 in
    every epoch, independently; ``"alternating"`` draws the flips of epoch 0
    the same way and then mirrors every sample the other way round in each
    following epoch, ``flip(e) = flip(0) xor (e odd)``, so each sample is seen
    both ways in every two epochs instead of by chance (Jordan, "94% on
    CIFAR-10 in 3.29 seconds on a single GPU", 2024, Section 3.6).

    Returns:
        ``(offsets_y, offsets_x, flips)``: (n,) int64 in ``[0, positions)``
        (default ``2P + 1``: the crops of an image padded by P; the paper's
        patches of 256-pixel images pass ``256 - 224 + 1``) and (n,) bool (all
        False without ``flip``), each a function of (seed, epoch, index) only,
        so a sample is augmented the same on any number of ranks.
    """
    check_flip_schedule(flip_schedule)
    indices = numpy.asarray(indices)
    positions = 2 * pad + 1 if positions is None else int(positions)
    oy = integers(seed, epoch, indices, CROP_Y_STREAM, positions)
    ox = integers(seed, epoch, indices, CROP_X_STREAM, positions)
    if not flip:
        return oy, ox, numpy.zeros(len(indices), bool)
    if flip_schedule == "alternating":
        return oy, ox, (uniform(seed, 0, indices, FLIP_STREAM) < 0.5) ^ bool(epoch % 2)
    return oy, ox, uniform(seed, epoch, indices, FLIP_STREAM) < 0.5


def permutation(seed: int, epoch: int, count: int, stream: int = ORDER_STREAM) -> numpy.ndarray:
    """A permutation of ``range(count)`` as a function of (seed, epoch, stream) alone.

    Each index gets a 64-bit key ``hash(seed, epoch, index, stream)`` and the
    permutation sorts the indices by key (a stable sort: ties, which have
    probability about count^2 / 2^65, keep index order). Host int64 array.
    """
    if count < 0:
        raise ValueError(f"permutation: count must be >= 0, got {count}")
    keys = row_keys(seed, epoch, numpy.arange(count, dtype=numpy.int64), stream, numpy)
    return numpy.argsort(keys, kind="stable").astype(numpy.int64)
