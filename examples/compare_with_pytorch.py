"""Train the same AlexNet in npalexnet and in PyTorch, side by side, and plot both loss curves.

    python examples/compare_with_pytorch.py [--steps 300] [--width 0.25] [--data-dir DIR] [--out FILE.png]

Both networks start from identical weights (the torch twin is built from the
npalexnet model and loads its state_dict), see identical batches in the same
order, and take SGD steps with the same momentum and weight decay; dropout
is off (its random masks are the one thing the two libraries would draw
differently). Before the first step, the output and every gradient on the
first batch are held to the library's tolerance table
(:func:`npalexnet.gradcheck.torch_compare.check_against_torch`, with a random
upstream gradient). If every forward and backward pass is right, the two loss
curves then lie on top of each other for hundreds of steps.

The default is float64: the two libraries then differ only by the rounding
of their summation orders (1e-16), and after 300 steps at lr 0.05 the losses
still agree to about 1e-14. In float32 (``--dtype float32``) the rounding
differences start at 1e-7 and training amplifies them exponentially, like
any perturbation of a chaotic system: at lr 0.01 they stay below 1e-3 of
the loss over 300 steps, at lr 0.05 the two curves visibly part after about
150 steps, each a valid training run. That is rounding, not a wrong gradient
(a wrong gradient shows in the first steps, and ``examples/inspect_backprop.py``
checks each one).

The PNG shows both curves and, below, their absolute difference; the title
gives the largest difference. The exit status is 1 when the first-step check
fails or the largest difference of the losses exceeds ``--tolerance``
(relative to the loss: a bound on the whole run, which accumulates every
step's rounding, so it is an option of its own and not an entry of the
per-operation table), 2 for unreadable data.

``--width`` scales the CIFAR AlexNet (0.25 takes about 0.13 s per step for
both libraries together on two cores at batch 32 in float64; 1.0 is the full
23-million-parameter net).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy

import npalexnet
from npalexnet import nn, optim
from npalexnet.gradcheck import relative_error
from npalexnet.inspect.batch import study_batch_for_script
from npalexnet.models import alexnet


def batches(x, y, batch_size, steps, seed):
    """``steps`` batches drawn from (x, y): shuffled passes, the same for both libraries."""
    rng = numpy.random.default_rng(seed)
    order = numpy.empty(0, dtype=numpy.int64)
    for _ in range(steps):
        if len(order) < batch_size:
            order = numpy.concatenate([order, rng.permutation(len(y))])
        idx, order = order[:batch_size], order[batch_size:]
        yield x[idx], y[idx]


def train_both(x, y, *, steps, batch_size, width, lr, momentum, weight_decay, label_smoothing, seed,
               dtype="float32", lrn=False):
    """Train the npalexnet model and its torch twin.

    Returns:
        ``(npalexnet losses, torch losses, final weight error, first-step Comparison)``: the
        Comparison (:mod:`npalexnet.gradcheck.torch_compare`) holds the output and every gradient
        of both nets on the first batch, before any step.
    """
    import torch

    from npalexnet.gradcheck.torch_compare import check_against_torch
    from npalexnet.gradcheck.torch_twin import to_tensor, to_torch

    npalexnet.manual_seed(seed)
    model = alexnet("cifar", width=width, dropout=0.0, lrn=lrn).astype(dtype)
    twin = to_torch(model)
    all_batches = list(batches(x.astype(dtype), y, batch_size, steps, seed))
    first_step = check_against_torch(model, twin, all_batches[0][0], dtype=dtype, seed=seed, check=False)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    topt = torch.optim.SGD(twin.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    tcrit = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    ours, theirs = [], []
    for xb, yb in all_batches:
        opt.zero_grad()
        loss = criterion(model(xb), yb)
        model.backward(criterion.backward())
        opt.step()
        ours.append(float(loss))

        topt.zero_grad()
        tloss = tcrit(twin(to_tensor(xb)), torch.from_numpy(yb))
        tloss.backward()
        topt.step()
        theirs.append(float(tloss.detach()))
    tparams = dict(twin.named_parameters())
    weight_error = max(relative_error(p.data, tparams[n]) for n, p in model.named_parameters())
    return numpy.array(ours), numpy.array(theirs), weight_error, first_step


def plot(ours, theirs, path, title_extra=""):
    """Both loss curves and their absolute difference, one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = numpy.arange(1, len(ours) + 1)
    diff = numpy.abs(ours - theirs)
    fig, (ax, ax_diff) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    ax.plot(steps, theirs, color="tab:orange", lw=3.0, alpha=0.6, label="PyTorch (autograd)")
    ax.plot(steps, ours, color="tab:blue", lw=1.0, label="npalexnet (hand-written backward)")
    ax.set_ylabel("training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(f"Same net, same weights, same batches{title_extra}\n"
                 f"largest |difference| of the losses: {diff.max():.2e} (step {int(diff.argmax()) + 1})")
    ax_diff.semilogy(steps, numpy.maximum(diff, 1e-17), color="tab:red", lw=1.0)   # 0 drawn at 1e-17
    ax_diff.set_ylabel("|difference|")
    ax_diff.set_xlabel("step")
    ax_diff.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier of the CIFAR AlexNet")
    parser.add_argument("--lrn", action="store_true", help="add the paper's LRN after conv1 and conv2")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--images", type=int, default=4096, help="size of the pool of training images used")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (image folders or the Python pickles)")
    parser.add_argument("--out", default="compare_with_pytorch.png")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest allowed |loss difference| / max loss (default 1e-8 in float64, "
                             "1e-3 in float32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tolerance is None:
        args.tolerance = 1e-8 if args.dtype == "float64" else 1e-3

    data = study_batch_for_script(args.data_dir, args.images, "train", args.seed)
    x, y = data.x, data.y
    print(f"{len(y)} images from {data.source}; {args.steps} steps of {args.batch_size}, CIFAR AlexNet width "
          f"{args.width}, {args.dtype}, SGD lr {args.lr} momentum {args.momentum} wd {args.weight_decay}")
    t0 = time.perf_counter()
    ours, theirs, weight_error, first_step = train_both(
        x, y, steps=args.steps, batch_size=args.batch_size, width=args.width, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        seed=args.seed, dtype=args.dtype, lrn=args.lrn)
    worst_array, worst_error = first_step.worst
    tol_value, tol_grad = first_step.tolerances["output"], first_step.tolerances["input"]
    print(f"first batch against PyTorch autograd ({args.dtype} table: outputs {tol_value:g}, gradients "
          f"{tol_grad:g}): {len(first_step.errors)} arrays, largest error {worst_error:.2e} ({worst_array})"
          + ("" if first_step.passed else f": FAILED ({first_step.describe_failures()})"))
    diff = numpy.abs(ours - theirs)
    worst = float(diff.max() / max(numpy.abs(theirs).max(), 1e-12))
    plot(ours, theirs, args.out, f" ({args.dtype}, width {args.width})")
    print(f"{time.perf_counter() - t0:.1f} s; loss {ours[0]:.4f} -> {ours[-1]:.4f} (npalexnet), "
          f"{theirs[0]:.4f} -> {theirs[-1]:.4f} (PyTorch)")
    print(f"largest |loss difference| {diff.max():.3e} at step {int(diff.argmax()) + 1} "
          f"({worst:.2e} of the largest loss); weights after training differ by {weight_error:.2e} (relative)")
    print(f"plot: {args.out}")
    if not first_step.passed:
        print("FAILED: the first step's gradients disagree with PyTorch's beyond the tolerance table")
        return 1
    if not worst <= args.tolerance:
        print(f"FAILED: the curves separate by more than {args.tolerance:g} of the loss")
        return 1
    print("The two curves lie on top of each other.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
