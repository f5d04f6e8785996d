"""Per-kernel GPU timing: each CUDA kernel against the CuPy array code it replaces.

For AlexNet's own shapes (paper net and CIFAR net, batch 128 by default),
times im2col, col2im, max-pool, LRN, ReLU and dropout both ways with CUDA
events (median of ``--reps`` after warm-up), checks that the two agree, and
prints one line per operation with the speed-up. This is the evidence for
switching the kernels on by default (see npalexnet/kernels/cuda_dispatch.py).

    python benchmarks/bench_cuda_kernels.py [--batch 128] [--dtype float32] [--reps 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy


def timed(cupy, fn, reps):
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


def rel_err(cupy, a, b):
    a, b = cupy.asnumpy(a).astype(numpy.float64), cupy.asnumpy(b).astype(numpy.float64)
    return float(numpy.max(numpy.abs(a - b)) / max(numpy.max(numpy.abs(b)), 1e-30))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args(argv)

    import cupy

    import npalexnet
    from npalexnet import nn
    from npalexnet.kernels import cuda_dispatch
    from npalexnet.kernels import cuda_kernels as ck
    from npalexnet.kernels import im2col as K

    dtype = numpy.dtype(args.dtype)
    n = args.batch
    rng = cupy.random.default_rng(0)

    def rand(shape, cn=False):
        """Random array of ``shape``; ``cn``: (C, N, ...) memory, the layout conv/ReLU produce."""
        if cn:
            return rng.standard_normal((shape[1], shape[0]) + tuple(shape[2:]), dtype=dtype).swapaxes(0, 1)
        return rng.standard_normal(shape, dtype=dtype)

    rows = []

    def report(name, t_array, t_kernel, err):
        rows.append((name, t_array, t_kernel, err))
        print(f"{name:44s} array {t_array:8.3f} ms   kernel {t_kernel:8.3f} ms   "
              f"x{t_array / t_kernel:6.2f}   rel.err {err:.1e}", flush=True)

    print(f"device: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, CuPy {cupy.__version__}, "
          f"dtype {dtype}, batch {n}, median of {args.reps}", flush=True)
    cuda_dispatch._override = False     # the layers below run their array code

    def bench_conv(name, shape, k, s, p, cn):
        x = rand(shape, cn)
        ref = K.im2col_array(x, k, s, p)
        err = rel_err(cupy, ck.im2col(x, k, s, p), ref)
        report(f"im2col {name}", timed(cupy, lambda: K.im2col_array(x, k, s, p), args.reps),
               timed(cupy, lambda: ck.im2col(x, k, s, p), args.reps), err)
        col = rng.standard_normal(ref.shape, dtype=dtype)
        err = rel_err(cupy, ck.col2im(col, shape, k, s, p), K.col2im_array(col, shape, k, s, p))
        report(f"col2im {name}", timed(cupy, lambda: K.col2im_array(col, shape, k, s, p), args.reps),
               timed(cupy, lambda: ck.col2im(col, shape, k, s, p), args.reps), err)

    def bench_pool(name, shape, k, s):
        x = rand(shape, cn=True)
        pool = nn.MaxPool2d(k, s)
        y = pool(x)
        dy = rng.standard_normal(y.shape, dtype=dtype)
        dx_ref = pool.backward(dy)
        out, argmax = ck.maxpool2d_forward(x, (k, k), (s, s), (0, 0))
        err = max(rel_err(cupy, out.transpose(1, 0, 2, 3), y),
                  rel_err(cupy, ck.maxpool2d_backward(dy, argmax, shape, (k, k), (s, s), (0, 0)), dx_ref))
        report(f"maxpool fwd {name}", timed(cupy, lambda: pool(x), args.reps),
               timed(cupy, lambda: ck.maxpool2d_forward(x, (k, k), (s, s), (0, 0)), args.reps), err)

        def array_code():
            pool(x)
            return pool.backward(dy)

        def kernels():
            _, am = ck.maxpool2d_forward(x, (k, k), (s, s), (0, 0))
            return ck.maxpool2d_backward(dy, am, shape, (k, k), (s, s), (0, 0))

        report(f"maxpool fwd+bwd {name}", timed(cupy, array_code, args.reps), timed(cupy, kernels, args.reps), err)

    def bench_lrn(name, shape):
        x = rand(shape, cn=True)
        lrn = nn.LocalResponseNorm.from_paper()
        size, alpha, beta, k = lrn.size, lrn.alpha, lrn.beta, lrn.k
        dy = rng.standard_normal(shape, dtype=dtype)
        y_ref = lrn(x)
        dx_ref = lrn.backward(dy)
        y, sc, sp = ck.lrn_forward(x, size, alpha, beta, k)
        err = max(rel_err(cupy, y, y_ref), rel_err(cupy, ck.lrn_backward(dy, x, sc, sp, size, alpha, beta), dx_ref))
        report(f"lrn fwd {name}", timed(cupy, lambda: lrn(x), args.reps),
               timed(cupy, lambda: ck.lrn_forward(x, size, alpha, beta, k), args.reps), err)

        def array_code():
            lrn(x)
            return lrn.backward(dy)

        def kernels():
            _, sc, sp = ck.lrn_forward(x, size, alpha, beta, k)
            return ck.lrn_backward(dy, x, sc, sp, size, alpha, beta)

        report(f"lrn fwd+bwd {name}", timed(cupy, array_code, args.reps), timed(cupy, kernels, args.reps), err)

    # name, x shape, kernel, stride, padding, (C, N, H, W) memory (as conv/ReLU/pool produce)
    bench_conv("paper conv1 (3x227x227, 11/4)", (n, 3, 227, 227), (11, 11), (4, 4), (0, 0), False)
    bench_conv("paper conv2 (96x27x27, 5 p2)", (n, 96, 27, 27), (5, 5), (1, 1), (2, 2), True)
    bench_conv("paper conv3 (256x13x13, 3 p1)", (n, 256, 13, 13), (3, 3), (1, 1), (1, 1), True)
    bench_conv("cifar conv2 (64x8x8, 3 p1)", (n, 64, 8, 8), (3, 3), (1, 1), (1, 1), True)
    cupy.get_default_memory_pool().free_all_blocks()
    bench_pool("paper pool1 (96x55x55, 3/2)", (n, 96, 55, 55), 3, 2)
    bench_pool("paper pool5 (256x13x13, 3/2)", (n, 256, 13, 13), 3, 2)
    bench_pool("cifar pool (192x8x8, 2/2)", (n, 192, 8, 8), 2, 2)
    bench_lrn("paper lrn1 (96x55x55)", (n, 96, 55, 55))
    bench_lrn("paper lrn2 (256x27x27)", (n, 256, 27, 27))

    x = rand((n, 96, 55, 55), cn=True)
    relu = nn.ReLU()
    err = rel_err(cupy, ck.relu_forward(x)[0], relu(x))
    report("relu fwd (96x55x55)", timed(cupy, lambda: relu(x), args.reps),
           timed(cupy, lambda: ck.relu_forward(x), args.reps), err)
    a = rand((n, 4096))
    drop = nn.Dropout(0.5)
    mask = rng.random(a.shape) >= 0.5
    err = rel_err(cupy, ck.mask_scale(a, mask, 2.0), drop._apply_mask(a, mask))
    report("dropout apply (4096)", timed(cupy, lambda: drop._apply_mask(a, mask), args.reps),
           timed(cupy, lambda: ck.mask_scale(a, mask, 2.0), args.reps), err)

    total_a = sum(r[1] for r in rows)
    total_k = sum(r[2] for r in rows)
    print(f"{'sum of the rows above':44s} array {total_a:8.3f} ms   kernel {total_k:8.3f} ms   "
          f"x{total_a / total_k:6.2f}")
    worst = max(r[3] for r in rows)
    print(f"largest relative difference kernel vs array code: {worst:.1e}")
    npalexnet.kernels.use_cuda_kernels(None)
    return 0 if worst < (1e-4 if dtype == numpy.float32 else 1e-10) else 1


if __name__ == "__main__":
    sys.exit(main())
