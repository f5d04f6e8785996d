#!/usr/bin/env python
"""Write a generated ImageFolder tree of JPEGs with realistic sizes and a learnable class structure.

    python benchmarks/make_imagefolder.py /tmp/synth --classes 10 --train-per-class 300 --test-per-class 50
    python benchmarks/make_imagefolder.py /tmp/synth20k --classes 100 --train-per-class 200 --test-per-class 0

Layout: ``OUT/train/<class>/<n>.jpg`` and ``OUT/test/<class>/<n>.jpg`` (no
``test/`` with ``--test-per-class 0``), class names ``c000``, ``c001``, ...

Each image has its own size, width and height drawn uniformly from
``--min-size`` to ``--max-size`` (default 300x200 to 640x480, a quarter of
them portrait), so the decode meets every aspect ratio from 1:3.2 to 3.2:1.
The class is in the picture, not in a colour of the whole frame: one to three
shapes of the class's kind (six kinds: ellipse, rectangle, triangle, stripes,
ring, cross) in the class's hue (spaced by the golden ratio around the colour
wheel, jittered), of random size and position near the centre (so the centre
crop keeps them), on a random background, plus a distractor shape of a random
kind and colour and per-pixel noise; then JPEG at quality 90. A net has to
learn shape and colour together, as in photographs, and a short run shows its
loss falling. Everything is a function of ``--seed`` and the image's number.

The tests import :func:`write_tree` (tiny sizes, a few images); the
benchmarks run the script (thousands of full-size images).
"""

from __future__ import annotations

import argparse
import colorsys
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy

SHAPES = ("ellipse", "rectangle", "triangle", "stripes", "ring", "cross")
GOLDEN = 0.6180339887498949


def class_name(label: int) -> str:
    return f"c{label:03d}"


def _colour(hue: float, rng, saturation=(0.6, 0.95), value=(0.55, 0.95)) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*saturation), rng.uniform(*value))
    return int(255 * r), int(255 * g), int(255 * b)


def _draw_shape(draw, kind: str, cx: float, cy: float, r: float, colour, rng) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "ellipse":
        draw.ellipse((cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r), fill=colour)
    elif kind == "rectangle":
        draw.rectangle((cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r), fill=colour)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif kind == "stripes":
        width = max(1, int(r / 4))
        for k in range(-2, 3):
            x = cx + k * 2 * width
            draw.rectangle((x - width / 2, cy - r, x + width / 2, cy + r), fill=colour)
    elif kind == "ring":
        draw.ellipse(box, outline=colour, width=max(1, int(r / 3)))
    else:   # cross
        t = r / 3
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=colour)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=colour)


def make_image(label: int, rng, min_size=(300, 200), max_size=(640, 480)):
    """One PIL RGB image of class ``label`` (see the module doc)."""
    from PIL import Image, ImageDraw

    w, h = int(rng.integers(min_size[0], max_size[0] + 1)), int(rng.integers(min_size[1], max_size[1] + 1))
    if rng.random() < 0.25:
        w, h = h, w
    image = Image.new("RGB", (w, h), _colour(rng.random(), rng, (0.0, 0.35), (0.25, 0.85)))
    draw = ImageDraw.Draw(image)
    side = min(w, h)
    distractor = (SHAPES[int(rng.integers(len(SHAPES)))], _colour(rng.random(), rng))
    shapes = [(SHAPES[label % len(SHAPES)], _colour(label * GOLDEN + rng.uniform(-0.03, 0.03), rng))
              for _ in range(int(rng.integers(1, 4)))]
    for kind, colour in [distractor] + shapes:
        r = side * rng.uniform(0.1, 0.25)
        cx = w / 2 + rng.uniform(-0.3, 0.3) * side
        cy = h / 2 + rng.uniform(-0.3, 0.3) * side
        _draw_shape(draw, kind, cx, cy, r, colour, rng)
    pixels = numpy.asarray(image, dtype=numpy.int16)
    pixels = pixels + rng.integers(-24, 25, size=pixels.shape, dtype=numpy.int16)
    return Image.fromarray(numpy.clip(pixels, 0, 255).astype(numpy.uint8))


def _write_one(args) -> None:
    path, label, seed, part, number, min_size, max_size, quality = args
    rng = numpy.random.default_rng([seed, part, number])
    make_image(label, rng, min_size, max_size).save(path, quality=quality)


def write_tree(root, classes: int = 10, train_per_class: int = 20, test_per_class: int = 5,
               min_size=(300, 200), max_size=(640, 480), seed: int = 0, workers: int = 1, quality: int = 90,
               progress: bool = False) -> Path:
    """``root/train/<class>/*.jpg`` (and ``root/test/...`` when ``test_per_class`` > 0); returns ``root``."""
    root = Path(root)
    tasks = []
    for part, (split, per_class) in enumerate((("train", train_per_class), ("test", test_per_class))):
        for label in range(classes):
            if per_class:
                (root / split / class_name(label)).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                number = label * per_class + i
                tasks.append((str(root / split / class_name(label) / f"{i:05d}.jpg"), label, seed, part, number,
                              tuple(min_size), tuple(max_size), quality))
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), unit="img", desc=f"writing {root}")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write_one, tasks, chunksize=64):
                if progress:
                    bar.update(1)
    else:
        for task in tasks:
            _write_one(task)
            if progress:
                bar.update(1)
    if progress:
        bar.close()
    return root


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 300x200, got {text!r}") from None
    return w, h


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the tree's root folder")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--test-per-class", type=int, default=20)
    p.add_argument("--min-size", type=_size, default=(300, 200), help="smallest WIDTHxHEIGHT (default 300x200)")
    p.add_argument("--max-size", type=_size, default=(640, 480), help="largest WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    if args.min_size[0] > args.max_size[0] or args.min_size[1] > args.max_size[1]:
        p.error("--min-size must not exceed --max-size")
    write_tree(args.out, args.classes, args.train_per_class, args.test_per_class, args.min_size, args.max_size,
               args.seed, args.workers, args.quality, progress=sys.stderr.isatty())
    total = args.classes * (args.train_per_class + args.test_per_class)
    print(f"wrote {total} JPEGs into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
