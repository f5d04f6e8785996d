"""One image file -> one fixed-size uint8 array: the single decode rule of every ImageFolder path.

Notation: W x H the file's size, S the decoded size, C channels (3 RGB, 1 grey).

Two rules (``RESIZE_RULES``):

* ``"crop"`` (the default): the paper's and torchvision's rule (Section 2 of
  Krizhevsky et al. 2012: "we first rescaled the image such that the shorter
  side was of length 256, and then cropped out the central 256x256 patch";
  torchvision's ``Resize(S)`` + ``CenterCrop(S)``). The shorter side becomes
  S, the longer ``int(S * long / short)`` (torchvision's rounding), and the
  centre S x S window is kept, its origin ``int(round((len - S) / 2))``.
* ``"squash"``: both sides resized to S, the aspect ratio lost (what
  npalexnet did before, kept for trees of small square images).

Resizing is Pillow's bilinear filter, which widens its support when it
shrinks (an antialiased downscale, as torchvision's on PIL images). A JPEG
at least twice as large as the target on both axes is first decoded at 1/2,
1/4 or 1/8 of its size by Pillow's ``draft()`` (the DCT scaling of libjpeg),
never below the target, so the resize that follows still shrinks: a 4000 px
photograph decodes about ten times faster, and a 500 px one is unaffected.
"""

from __future__ import annotations

import numpy

from .errors import DataError

RESIZE_RULES = ("crop", "squash")
DEFAULT_RULE = "crop"


def centre_offset(length: int, window: int) -> int:
    """Origin of the centred ``window`` in ``length`` (torchvision's ``int(round((length - window) / 2))``)."""
    return int(round((length - window) / 2.0))


def resized_size(width: int, height: int, size: int, rule: str = DEFAULT_RULE) -> tuple[int, int]:
    """``(width, height)`` of the image before its centre crop (``rule="crop"``), or ``(S, S)``."""
    if rule == "squash":
        return size, size
    if rule != "crop":
        raise ValueError(f"unknown resize rule {rule!r}: expected one of {', '.join(RESIZE_RULES)}")
    if width <= height:
        return size, max(size, int(size * height / width))
    return max(size, int(size * width / height)), size


def decode_image(path: str, size: int, channels: int = 3, rule: str = DEFAULT_RULE) -> numpy.ndarray:
    """One file -> (C, S, S) uint8 by ``rule`` (see the module doc).

    Raises:
        DataError: the file cannot be read or decoded (its name and Pillow's reason).
    """
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as img:
            target = resized_size(img.width, img.height, size, rule)
            if img.format == "JPEG":
                img.draft(mode, target)          # a no-op unless the file is >= 2x the target
            img = img.convert(mode)
            if img.size != target:
                img = img.resize(target, Image.BILINEAR)
            if target != (size, size):
                left, top = centre_offset(target[0], size), centre_offset(target[1], size)
                img = img.crop((left, top, left + size, top + size))
            array = numpy.asarray(img, dtype=numpy.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc
    return array[None] if channels == 1 else array.transpose(2, 0, 1)
