"""Batched augmentation in array code, on whichever device holds the batch.

Notation: B images of a batch, C channels, H x W pixels, P the crop padding,
S the model's input size.

Training: per-image random crop of an H x W window out of the image padded
by P on every side (reflect padding by default, as the anchor recipe;
``"zero"`` pads black like torchvision's ``RandomCrop(padding=4)``), random
horizontal flip, ``(x/255 - mean)/std`` per channel, a resize to S when
the model wants another size (227 for the paper variants), and optionally
random erasing (Zhong et al., AAAI 2020). Evaluation: the
normalisation and resize only.

Crop and flip are one gather: the padded image is never built; each output
row/column reads the source row/column its padding rule maps it to. Only the
random numbers (a few per image) are drawn on the host, from a generator the
caller passes, so a batch is augmented identically on NumPy and CuPy.
"""

from __future__ import annotations

import numpy

from .. import random_streams
from ..backend import asnumpy, get_array_module

#: Per-channel mean and standard deviation of CIFAR-10's training images (pixels in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
PADDING_MODES = ("reflect", "zero")
RESIZE_MODES = ("bilinear", "nearest")


def source_indices(xp, offsets, size: int, pad: int, mode: str = "reflect", window: int | None = None):
    """Map crop positions to source pixels along one axis.

    Args:
        offsets: (B,) ints in [0, size + 2P - window]: where each crop starts in the padded axis.
        size: the axis length (H or W).
        pad: P, with P < size for reflect padding.
        mode: ``"reflect"`` (mirror without repeating the edge, numpy/torch
            ``reflect``) or ``"zero"``.
        window: the crop's length (default ``size``: a crop of the padded image
            as large as the image).
    Returns:
        ``(index, valid)``: (B, window) int indices into the unpadded axis, and a
        (B, window) bool mask, False where a zero-padded crop reads padding (None for reflect).
    """
    window = size if window is None else int(window)
    pos = xp.asarray(offsets, dtype=xp.int64)[:, None] + xp.arange(window, dtype=xp.int64)[None, :] - pad
    if mode == "reflect":
        if pad >= size:
            raise ValueError(f"reflect padding of {pad} needs images larger than {pad} pixels, got {size}")
        if pad:
            pos = xp.abs(pos)                                    # -i -> i
            pos = xp.where(pos > size - 1, 2 * (size - 1) - pos, pos)
        return pos, None
    if mode == "zero":
        valid = (pos >= 0) & (pos < size)
        return xp.clip(pos, 0, size - 1), valid
    raise ValueError(f"unknown padding mode {mode!r}: expected one of {', '.join(PADDING_MODES)}")


def crop_flip(images, offsets_y, offsets_x, flips, pad: int = 0, mode: str = "reflect", size: int | None = None):
    """Per-image crop (of the image padded by P) and horizontal flip, in one gather.

    Args:
        images: (B, C, H, W) any dtype (uint8 in the pipeline).
        offsets_y, offsets_x: (B,) crop origins in the padded image, in
            [0, H + 2P - size] and [0, W + 2P - size].
        flips: (B,) bool, mirror left-right after cropping.
        pad: P (0: crops of the image itself, as the paper's 224 patches of 256 images).
        mode: ``"reflect"`` or ``"zero"`` padding.
        size: the crop's side (default: H and W, the padded random crop of CIFAR training).
    Returns:
        (B, C, size, size) of the input's dtype: ``flip(pad(x)[:, :, oy:oy+size, ox:ox+size])``.
    """
    xp = get_array_module(images)
    b, c, h, w = images.shape
    if pad == 0 and size is not None:
        return _window_flip(images, offsets_y, offsets_x, flips, size)
    rows, row_ok = source_indices(xp, offsets_y, h, pad, mode, size)
    cols, col_ok = source_indices(xp, offsets_x, w, pad, mode, size)
    flips = xp.asarray(flips, dtype=bool)[:, None]
    cols = xp.where(flips, cols[:, ::-1], cols)              # a flip reads the columns backwards
    out = images[xp.arange(b)[:, None, None, None], xp.arange(c)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if row_ok is not None:
        col_ok = xp.where(flips, col_ok[:, ::-1], col_ok)
        out = out * (row_ok[:, None, :, None] & col_ok[:, None, None, :]).astype(out.dtype)
    return out


def _window_flip(images, offsets_y, offsets_x, flips, size: int):
    """:func:`crop_flip` without padding: each crop read as one window of a strided view (every
    ``size``-long row copied whole), then the flagged crops mirrored in place."""
    xp = get_array_module(images)
    b, c, h, w = images.shape
    oy, ox = xp.asarray(offsets_y, dtype=xp.int64), xp.asarray(offsets_x, dtype=xp.int64)
    if b and (int(oy.min()) < 0 or int(ox.min()) < 0 or int(oy.max()) > h - size or int(ox.max()) > w - size):
        raise ValueError(f"crop_flip: {size}-pixel crops at offsets up to ({int(oy.max())}, {int(ox.max())}) "
                         f"leave a {h}x{w} image")
    s = images.strides
    windows = xp.lib.stride_tricks.as_strided(images, shape=(b, c, h - size + 1, w - size + 1, size, size),
                                              strides=(s[0], s[1], s[2], s[3], s[2], s[3]))
    out = windows[xp.arange(b), :, oy, ox]                   # (B, C, size, size), a copy
    flips = xp.asarray(flips, dtype=bool)
    if bool(flips.any()):
        out[flips] = out[flips][..., ::-1]
    return out


def hflip(images, flips):
    """Mirror left-right the images whose flag is set. images (B, C, H, W), flips (B,) bool."""
    xp = get_array_module(images)
    flips = xp.asarray(flips, dtype=bool)[:, None, None, None]
    return xp.where(flips, images[..., ::-1], images)


def normalize(images, mean, std, dtype=numpy.float32):
    """(B, C, H, W) uint8 -> ``(x/255 - mean[c]) / std[c]`` in ``dtype``."""
    xp = get_array_module(images)
    c = images.shape[1]
    mean = xp.asarray(mean, dtype=dtype).reshape(1, c, 1, 1)
    scale = (1.0 / (255.0 * xp.asarray(std, dtype=dtype))).reshape(1, c, 1, 1)
    inv_std = (1.0 / xp.asarray(std, dtype=dtype)).reshape(1, c, 1, 1)
    x = images.astype(dtype)      # one new array, scaled and shifted in place
    x *= scale
    x -= mean * inv_std
    return x


def interpolation_matrix(xp, in_size: int, out_size: int, mode: str = "bilinear", dtype=numpy.float32):
    """(out_size, in_size) matrix M with ``resized = M @ x`` along one axis.

    Bilinear uses half-pixel centres, ``src = (o + 0.5) in/out - 0.5`` clamped
    at 0 (torch's ``interpolate(..., align_corners=False)`` without
    antialiasing); nearest takes ``floor(o in/out)`` (torch's ``"nearest"``).
    """
    o = numpy.arange(out_size, dtype=numpy.float64)
    m = numpy.zeros((out_size, in_size), dtype=numpy.float64)
    if mode == "nearest":
        m[numpy.arange(out_size), numpy.minimum(numpy.floor(o * in_size / out_size).astype(int), in_size - 1)] = 1
    elif mode == "bilinear":
        src = numpy.maximum((o + 0.5) * in_size / out_size - 0.5, 0.0)
        i0 = numpy.minimum(numpy.floor(src).astype(int), in_size - 1)
        i1 = numpy.minimum(i0 + 1, in_size - 1)
        w1 = src - i0
        numpy.add.at(m, (numpy.arange(out_size), i0), 1 - w1)
        numpy.add.at(m, (numpy.arange(out_size), i1), w1)
    else:
        raise ValueError(f"unknown resize mode {mode!r}: expected one of {', '.join(RESIZE_MODES)}")
    return xp.asarray(m, dtype=dtype)


def resize(images, size: int, mode: str = "bilinear"):
    """(B, C, H, W) float -> (B, C, S, S) as two small matrix products (``M_h x M_w^T``)."""
    xp = get_array_module(images)
    h, w = images.shape[2:]
    if (h, w) == (size, size):
        return images
    m_h = interpolation_matrix(xp, h, size, mode, images.dtype)
    m_w = interpolation_matrix(xp, w, size, mode, images.dtype)
    return xp.matmul(xp.matmul(m_h, images), m_w.T)


#: Random erasing's defaults (Zhong et al. 2020; torchvision's ``RandomErasing``): the box's share of the
#: image, its aspect ratio (height / width, drawn log-uniformly), and the tries to find one that fits.
ERASE_SCALE, ERASE_RATIO, ERASE_TRIES = (0.02, 0.33), (0.3, 3.3), 10


def erase_params(seed: int, epoch: int, indices, probability: float, size: tuple[int, int]):
    """Random erasing's boxes for the images ``indices``: each image erased with ``probability``, its box
    of area ``s H W`` (``s`` uniform in :data:`ERASE_SCALE`) and aspect ratio ``r`` (``log r`` uniform in
    ``log`` :data:`ERASE_RATIO`), sides ``round(sqrt(s H W r))`` by ``round(sqrt(s H W / r))``, at a uniform
    position where it fits; the first of :data:`ERASE_TRIES` draws that fits inside the image, else none.

    Every number comes from (seed, epoch, image index), like the crops and flips.

    Returns:
        ``(top, left, height, width)``: (n,) host int64 each; ``height`` 0 for an image left whole.
    """
    H, W = size
    u = random_streams.uniform(seed, epoch, numpy.asarray(indices), random_streams.ERASE_STREAM,
                               (1 + 4 * ERASE_TRIES,))
    chosen = u[:, 0] < probability
    scale, log_ratio, at_y, at_x = u[:, 1:].reshape(-1, 4, ERASE_TRIES).transpose(1, 0, 2)   # (n, tries) each
    area = H * W * (ERASE_SCALE[0] + scale * (ERASE_SCALE[1] - ERASE_SCALE[0]))
    low, high = numpy.log(ERASE_RATIO)
    ratio = numpy.exp(low + log_ratio * (high - low))
    heights = numpy.rint(numpy.sqrt(area * ratio)).astype(numpy.int64)
    widths = numpy.rint(numpy.sqrt(area / ratio)).astype(numpy.int64)
    fits = (heights < H) & (widths < W)
    first = numpy.argmax(fits, axis=1)
    rows = numpy.arange(len(first))
    ok = chosen & fits[rows, first]
    height, width = numpy.where(ok, heights[rows, first], 0), numpy.where(ok, widths[rows, first], 0)
    top = numpy.minimum((at_y[rows, first] * (H - height + 1)).astype(numpy.int64), H - height)
    left = numpy.minimum((at_x[rows, first] * (W - width + 1)).astype(numpy.int64), W - width)
    return top, left, height, width


def erase(images, top, left, height, width):
    """(B, C, H, W) float with each image's box ``[top, top + height) x [left, left + width)`` set to 0
    (the normalised mean: torchvision's ``value=0`` after ``Normalize``); a new array."""
    xp = get_array_module(images)
    H, W = images.shape[2:]
    top, left, height, width = (xp.asarray(a).reshape(-1, 1) for a in (top, left, height, width))
    rows, cols = xp.arange(H).reshape(1, -1), xp.arange(W).reshape(1, -1)
    in_rows = (rows >= top) & (rows < top + height)      # (B, H)
    in_cols = (cols >= left) & (cols < left + width)     # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (B, H, W)
    return images * keep[:, None].astype(images.dtype)


def channel_stats(images, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (N, C, H, W) uint8 images, pixels scaled to [0, 1].

    Summed in float64 chunk by chunk (a float64 copy of the whole split would
    be 8x its size), on the host (images on a GPU are copied a chunk at a time).
    """
    c = images.shape[1]
    total, total_sq, count = numpy.zeros(c), numpy.zeros(c), 0
    for start in range(0, images.shape[0], chunk):
        part = asnumpy(images[start:start + chunk]).astype(numpy.float64) / 255.0
        total += part.sum(axis=(0, 2, 3))
        total_sq += (part * part).sum(axis=(0, 2, 3))
        count += part.shape[0] * part.shape[2] * part.shape[3]
    mean = total / count
    std = numpy.sqrt(numpy.maximum(total_sq / count - mean * mean, 1e-12))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class Preprocess:
    """The training and evaluation transforms of one run.

    Args:
        mean, std: per-channel normalisation (pixels in [0, 1]).
        out_size: S, the model's input size (images are resized when it differs).
        pad: P of the random crop (0 disables cropping).
        padding: ``"reflect"`` or ``"zero"``.
        flip: random horizontal flips in training.
        flip_schedule: ``"random"`` (independent flips every epoch) or
            ``"alternating"`` (each image the other way round from the epoch
            before; :func:`npalexnet.random_streams.crop_flip_params`).
        resize_mode: ``"bilinear"`` or ``"nearest"``.
        erase: the probability of random erasing in training (:func:`erase_params`; 0: off).
        dtype: floating dtype of the model's input.
    """

    def __init__(self, mean, std, out_size: int, *, pad: int = 4, padding: str = "reflect",
                 flip: bool = True, flip_schedule: str = "random", resize_mode: str = "bilinear",
                 erase: float = 0.0, dtype=numpy.float32):
        if padding not in PADDING_MODES:
            raise ValueError(f"unknown padding mode {padding!r}: expected one of {', '.join(PADDING_MODES)}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize_mode!r}: expected one of {', '.join(RESIZE_MODES)}")
        if pad < 0:
            raise ValueError(f"crop padding must be >= 0, got {pad}")
        if not 0.0 <= erase <= 1.0:
            raise ValueError(f"the random erasing probability must be in [0, 1], got {erase}")
        self.erase = float(erase)
        self.mean, self.std = tuple(mean), tuple(std)
        self.out_size, self.pad, self.padding = int(out_size), int(pad), padding
        self.flip, self.resize_mode, self.dtype = bool(flip), resize_mode, dtype
        self.flip_schedule = random_streams.check_flip_schedule(flip_schedule)

    def train(self, images, seed: int, epoch: int, indices):
        """(B, C, H, W) uint8 -> (B, C, S, S) float: crop, flip, normalise, resize, and with ``erase``
        a random box set to zero (after the normalisation, as torchvision's ``RandomErasing``).

        The crop origins, flips and boxes come from
        :func:`npalexnet.random_streams.crop_flip_params` and :func:`erase_params`, keyed by
        ``(seed, epoch)`` and each image's index in the split (``indices``,
        (B,) host ints), so an image is augmented the same whatever batch,
        step or rank it lands in.
        """
        oy, ox, flips = random_streams.crop_flip_params(seed, epoch, indices, pad=self.pad, flip=self.flip,
                                                        flip_schedule=self.flip_schedule)
        if self.pad:
            images = crop_flip(images, oy, ox, flips, self.pad, self.padding)
        elif self.flip:
            images = hflip(images, flips)
        x = self.eval(images)
        if self.erase:
            x = erase(x, *erase_params(seed, epoch, indices, self.erase, tuple(x.shape[2:])))
        return x

    def eval(self, images):
        """(B, C, H, W) uint8 -> (B, C, S, S) float: normalise and resize only."""
        x = normalize(images, self.mean, self.std, self.dtype)
        return resize(x, self.out_size, self.resize_mode)
