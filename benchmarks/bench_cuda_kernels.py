"""Per-kernel GPU timing: each hand-written CUDA kernel against the CuPy array code it replaces.

For AlexNet's own shapes (paper net and CIFAR net, batch 128 by default) it
times, with CUDA events (median of ``--reps`` after two warm-up calls):

* the raw kernels: im2col and col2im (``npalexnet.kernels.cuda_kernels``)
  against the array code (``npalexnet.nn.im2col``);
* each layer's forward + backward with the ``cuda_kernels`` setting off
  (the layer's array code on CuPy) and on (its CUDA implementation, as
  ``NPALEXNET_CUDA_KERNELS=1`` selects): conv, max-pool, LRN, ReLU, dropout.

Each row checks that both ways agree (largest relative difference of the
outputs and input gradients) and prints the speed-up; ``--json`` writes every
row as one JSON line. This is the evidence for switching the kernels on by default
(``npalexnet.config``, ``cuda_kernels``; see benchmarks/RESULTS.md, GPU).

    python benchmarks/bench_cuda_kernels.py [--batch 128] [--dtype float32] [--reps 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without `pip install -e .`

# name, (N, C, H, W) without N, kernel, stride, padding, groups: the convolutions of both nets
CONVS = [
    ("paper conv1 3x227x227 11/4", (3, 227, 227), 96, 11, 4, 0, 1),
    ("paper conv2 96x27x27 5 p2 g2", (96, 27, 27), 256, 5, 1, 2, 2),
    ("paper conv3 256x13x13 3 p1", (256, 13, 13), 384, 3, 1, 1, 1),
    ("cifar conv1 3x32x32 3/2 p1", (3, 32, 32), 64, 3, 2, 1, 1),
    ("cifar conv2 64x8x8 3 p1", (64, 8, 8), 192, 3, 1, 1, 1),
]
POOLS = [("paper pool1 96x55x55 3/2", (96, 55, 55), 3, 2), ("paper pool5 256x13x13 3/2", (256, 13, 13), 3, 2),
         ("cifar pool 192x8x8 2/2", (192, 8, 8), 2, 2)]
LRNS = [("paper lrn1 96x55x55", (96, 55, 55)), ("paper lrn2 256x27x27", (256, 27, 27))]
RELU = ("relu fwd+bwd 96x55x55", (96, 55, 55))
DROPOUT = ("dropout fwd+bwd 4096", 4096)


def timed(cupy, fn, reps: int) -> float:
    """Median milliseconds of ``fn`` between two CUDA events, after two untimed calls."""
    for _ in range(2):
        fn()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def rel_err(a, b) -> float:
    """max|a - b| / max|b| in float64, on the host."""
    from npalexnet import asnumpy

    a, b = asnumpy(a).astype(numpy.float64), asnumpy(b).astype(numpy.float64)
    return float(numpy.max(numpy.abs(a - b)) / max(float(numpy.max(numpy.abs(b))), 1e-30))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--json", help="append the rows (and the device) to this file as one JSON line")
    args = parser.parse_args(argv)

    from npalexnet import backend

    if not backend.cupy_available():
        print(f"bench_cuda_kernels: no GPU: {backend.cupy_unavailable_reason()}", file=sys.stderr)
        return 2
    import cupy

    from npalexnet import config, nn
    from npalexnet.kernels import cuda_kernels as ck
    from npalexnet.nn import im2col as K

    dtype = numpy.dtype(args.dtype)
    n = args.batch
    rng = cupy.random.default_rng(0)
    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    rows = []

    def rand(shape, cn=False):
        """Random array of ``shape``; ``cn``: (C, N, ...) memory, the layout conv and ReLU pass on."""
        if cn:
            return rng.standard_normal((shape[1], shape[0]) + tuple(shape[2:]), dtype=dtype).swapaxes(0, 1)
        return rng.standard_normal(shape, dtype=dtype)

    def report(name, t_array, t_kernel, err):
        rows.append({"name": name, "array_ms": t_array, "kernel_ms": t_kernel, "speedup": t_array / t_kernel,
                     "rel_err": err})
        print(f"{name:44s} array {t_array:8.3f} ms   kernel {t_kernel:8.3f} ms   "
              f"x{t_array / t_kernel:6.2f}   rel.err {err:.1e}", flush=True)

    def layer_both_ways(name, layer, x, input_grad=True):
        """One layer's forward + backward with the CUDA kernels off, then on: times and agreement.

        Only the ``cuda_kernels`` setting differs (numba and the convolution algorithm are pinned to
        what a GPU run uses anyway, so the script runs the same comparison on the tests' CPU emulator).
        """
        y = layer(x)
        dy = rand(y.shape)
        results = {}

        def step():
            out = layer(x)
            return out, layer.backward(dy, input_grad=input_grad)

        for on in (False, True):
            with config.using(cuda_kernels=on, numba=False, conv="im2col"):
                layer.zero_grad()
                results[on] = step()
                results[on] += tuple(p.grad.copy() for p in layer.parameters())
                results[on] += (timed(cupy, step, args.reps),)
        err = max(rel_err(a, b) for a, b in zip(results[True][:-1], results[False][:-1]) if b is not None)
        report(name, results[False][-1], results[True][-1], err)

    print(f"device: {device}, CuPy {cupy.__version__}, dtype {dtype}, batch {n}, median of {args.reps}", flush=True)
    for name, (c, h, w), oc, k, s, p, g in CONVS:
        x = rand((n, c, h, w), cn=c > 3)
        geometry = ((k, k), (s, s), (p, p))
        ref = K.im2col(x, *geometry)
        report(f"im2col {name}", timed(cupy, lambda: K.im2col(x, *geometry), args.reps),
               timed(cupy, lambda: ck.im2col(x, *geometry), args.reps), rel_err(ck.im2col(x, *geometry), ref))
        col = rand(ref.shape)
        report(f"col2im {name}", timed(cupy, lambda: K.col2im(col, x.shape, *geometry), args.reps),
               timed(cupy, lambda: ck.col2im(col, x.shape, *geometry), args.reps),
               rel_err(ck.col2im(col, x.shape, *geometry), K.col2im(col, x.shape, *geometry)))
        conv = nn.Conv2d(c, oc, k, stride=s, padding=p, groups=g).astype(dtype).to("cuda")
        layer_both_ways(f"conv fwd+bwd {name}", conv, x, input_grad=c > 3)
        ref = col = conv = None   # paper conv1's im2col matrix alone is 0.5 GB at batch 128
        cupy.get_default_memory_pool().free_all_blocks()
    for name, (c, h, w), k, s in POOLS:
        layer_both_ways(f"maxpool fwd+bwd {name}", nn.MaxPool2d(k, s), rand((n, c, h, w), cn=True))
    for name, (c, h, w) in LRNS:
        layer_both_ways(f"lrn fwd+bwd {name}", nn.LocalResponseNorm.from_paper(), rand((n, c, h, w), cn=True))
    layer_both_ways(RELU[0], nn.ReLU(), rand((n,) + RELU[1], cn=True))
    layer_both_ways(DROPOUT[0], nn.Dropout(0.5, seed=0), rand((n, DROPOUT[1])))

    total_a = sum(r["array_ms"] for r in rows)
    total_k = sum(r["kernel_ms"] for r in rows)
    worst = max(r["rel_err"] for r in rows)
    print(f"{'sum of the rows above':44s} array {total_a:8.3f} ms   kernel {total_k:8.3f} ms   "
          f"x{total_a / total_k:6.2f}")
    print(f"largest relative difference kernel vs array code: {worst:.1e}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"kind": "kernels", "device": device, "cupy": cupy.__version__, "dtype": dtype.name,
                                "batch": n, "reps": args.reps, "rows": rows}) + "\n")
    return 0 if worst < (1e-4 if dtype == numpy.float32 else 1e-10) else 1


if __name__ == "__main__":
    sys.exit(main())
