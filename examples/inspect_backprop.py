"""One training step of AlexNet on a real CIFAR-10 batch, layer by layer, with proof.

    python examples/inspect_backprop.py [--data-dir DIR] [--batch-size 16] [--width 1.0] [--lrn]

Prints, for every layer of the CIFAR AlexNet (forward order):

1. shapes, activation statistics (mean, std, fraction of exact zeros, which
   after a ReLU is the fraction of dead units) and gradient norms
   (upstream |dL/dy|, downstream |dL/dx|, |dL/dW| and |dL/dW|/|W|), recorded
   by :func:`npalexnet.inspect.trace_step` through the module hooks;
2. the relative error of every array against PyTorch (same weights, same
   batch, same dropout masks, float32): each layer's output, the upstream
   gradient it received, the gradient it passed down and its parameter
   gradients;
3. the relative error of every gradient against finite differences in
   float64, along random directions: parameter gradients by perturbing the
   parameter, each layer's upstream gradient dL/dy by perturbing that layer's
   *output* with a forward hook that returns ``y + h v``. The float64 batch
   is dithered by 1e-3 so that flat image regions do not produce exact ties
   in max-pool windows, and a direction whose segment crosses a kink (a ReLU
   or a max-pool switching within h, detected by repeating the difference
   with h/2) is drawn again.

It then applies one SGD step. The exit status is 1 if any check fails.
With no CIFAR-10 data found (``--data-dir``, then ``data/cifar10``, ``data``)
it runs on a random batch and says so.
"""

from __future__ import annotations

import argparse
import sys

import numpy

import npalexnet
from npalexnet import backend, nn, optim
from npalexnet.gradcheck import relative_error
from npalexnet.inspect import trace_step
from npalexnet.inspect.batch import load_batch, random_batch
from npalexnet.inspect.gradcheck_report import TORCH_TOLERANCES
from npalexnet.models import alexnet

#: Whole-network finite differences: a few of the thousands of ReLU/max-pool
#: kinks fall within h along a direction, so errors sit near 1e-7..1e-6.
FD_TOLERANCE = 1e-5


KINKS = {"redrawn": 0}


def along_directions(evaluate, analytic, rng, live=None, directions=2, h=1e-6, retries=5):
    """Largest relative error of <g, v> against the central difference (L(+hv) - L(-hv)) / 2h.

    ``evaluate(delta)`` returns the loss with the checked array shifted by
    ``delta`` (a float64 host array of its shape). ``v`` mixes the analytic
    gradient's direction with a random one (both unit length): a random
    direction alone would see only |g|/sqrt(size) of a gradient with millions
    of entries, below the rounding error of the loss. A gradient wrong in
    direction or scale still disagrees. ``live`` masks entries left still.

    Kinks: along a segment of length 2h a ReLU input or a max-pool pair may
    cross over, and the loss is not differentiable there. When a direction
    disagrees, the difference is taken again with h/2: along a smooth
    segment both agree to ~h^2 (so the disagreement with ``g`` is real and
    is reported), across a kink they do not, and a new direction is drawn.
    """
    g = backend.asnumpy(analytic).astype(numpy.float64)
    live = numpy.ones(g.shape, dtype=bool) if live is None else live
    g_live = g * live
    g_unit = g_live / max(numpy.linalg.norm(g_live), 1e-300)

    def rel(a, b):
        return abs(a - b) / max(abs(a) + abs(b), 1e-300)

    worst = 0.0
    for _ in range(directions):
        for _attempt in range(retries + 1):
            r = rng.standard_normal(g.shape) * live
            v = g_unit + r / numpy.linalg.norm(r)
            v /= numpy.linalg.norm(v)
            exact = float(numpy.sum(g * v))
            numeric = (evaluate(h * v) - evaluate(-h * v)) / (2 * h)
            err = rel(numeric, exact)
            if err <= FD_TOLERANCE:
                break
            half = (evaluate(0.5 * h * v) - evaluate(-0.5 * h * v)) / h
            if rel(half, numeric) < 0.1 * err:
                break            # smooth along v: the disagreement is the gradient's
            KINKS["redrawn"] += 1
        worst = max(worst, err)
    return worst


def directional_error(loss, array, analytic, rng, directions=2, h=1e-6):
    """:func:`along_directions` for an array the loss reads (a parameter, the input)."""
    xp = backend.get_array_module(array)
    original = array.copy()

    def evaluate(delta):
        array[...] = original + xp.asarray(delta)
        try:
            return loss()
        finally:
            array[...] = original

    return along_directions(evaluate, analytic, rng, directions=directions, h=h)


def output_directional_error(model, criterion, x, y, rec, rng, seed, directions=2, h=1e-6):
    """The same check for dL/d(output of a layer): a forward hook adds delta to the output.

    Outputs that are exactly 0 (dead ReLU units, and what LRN or dropout make
    of them) are left still: where several share a max-pool window they tie
    for the maximum, and the loss has a kink there that no finite difference
    can check (nor can the layer's input move them off 0).
    """
    xp = backend.get_array_module(x)

    def evaluate(delta):
        shift = xp.asarray(delta)
        with rec.module.register_forward_hook(lambda m, i, out: out + shift):
            npalexnet.manual_seed(seed)
            return float(criterion(model(x), y))

    live = backend.asnumpy(rec.output) != 0
    return along_directions(evaluate, rec.grad_output, rng, live, directions, h)


def torch_step(model, x, y, label_smoothing):
    """The same step in PyTorch; per-layer output, grad_output, grad_input and parameter grads."""
    import torch

    from npalexnet.inspect.torch_twin import to_tensor, to_torch
    twin = to_torch(model)         # built from the npalexnet weights; dropout replays our masks
    seen = {}
    for name, m in twin.named_modules():
        if name and not list(m.children()):
            m.register_forward_hook(lambda mod, i, o, name=name: seen.setdefault(name, {}).update(output=o))
            m.register_full_backward_hook(lambda mod, gi, go, name=name: seen[name].update(
                grad_input=gi[0], grad_output=go[0]))
    tx = to_tensor(x, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(twin(tx), torch.from_numpy(backend.asnumpy(y)),
                                             label_smoothing=label_smoothing)
    loss.backward()
    params = {n: p.grad for n, p in twin.named_parameters()}
    return seen, params, float(loss.detach())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (image folders or the Python pickles)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of the CIFAR AlexNet")
    parser.add_argument("--lrn", action="store_true", help="add the paper's LRN after conv1 and conv2")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--directions", type=int, default=2, help="random directions per finite-difference check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = parser.parse_args(argv)
    KINKS["redrawn"] = 0

    batch = load_batch(args.data_dir, args.batch_size, "train", args.seed)
    if batch is None:
        where = args.data_dir or "data/cifar10, data"
        print(f"NOTE: no CIFAR-10 data found in {where}: using a random batch instead "
              f"(pass --data-dir DIR with the image folders or cifar-10-batches-py)")
        batch = random_batch(args.batch_size, args.seed)
    x, y, classes, source = batch
    print(f"batch: {x.shape[0]} images {tuple(x.shape[1:])} from {source}; labels "
          f"{', '.join(classes[int(t)] for t in y[:8])}{', ...' if len(y) > 8 else ''}")

    npalexnet.manual_seed(args.seed)
    model = alexnet("cifar", width=args.width, lrn=args.lrn)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    print(model.summary((x.shape[0],) + x.shape[1:]).split("\n")[-5])   # the total-params line
    initial_state = {k: numpy.array(v) for k, v in model.state_dict().items()}

    # ---- 1. the step, traced (float32, dropout on) -------------------------------------------
    npalexnet.manual_seed(args.seed)
    trace = trace_step(model, x, y, criterion)
    print("\n== Forward and backward, layer by layer (float32) ==")
    print(trace.table())

    failures = []

    # ---- 2. against PyTorch (float32, same weights, same dropout masks) ----------------------
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("\nPyTorch is not installed: comparison skipped (pip install -e \".[test]\")")
            args.no_torch = True
    if not args.no_torch:
        # Re-run our forward so each dropout layer holds this step's mask for the twin to replay.
        (tol_value, tol_grad), floor = TORCH_TOLERANCES["float32"]
        model.zero_grad()
        npalexnet.manual_seed(args.seed)
        model(x)
        seen, torch_grads, torch_loss = torch_step(model, x, y, args.label_smoothing)
        model.zero_grad()   # drop that forward's caches' gradients; the trace holds the step's
        print(f"\n== Against PyTorch autograd (float32; pass: error <= {tol_value:g} for outputs, "
              f"{tol_grad:g} for gradients, or every |difference| < {floor:g}) ==")
        print(f"loss: npalexnet {trace.loss:.7f}, torch {torch_loss:.7f}")
        header = f"{'Layer':<14}{'Type':<19}{'output':>10}{'dL/dy':>10}{'dL/dx':>10}{'dL/dW':>10}{'dL/db':>10}"
        print(header + "\n" + "-" * len(header))
        for rec in trace:
            t = seen[rec.name]
            cells = []
            pairs = [("output", rec.output, t["output"], tol_value),
                     ("dL/dy", rec.grad_output, t["grad_output"], tol_grad),
                     ("dL/dx", rec.grad_input, t["grad_input"], tol_grad)]
            for pname in ("weight", "bias"):
                if pname in rec.param_grads:
                    pairs.append((f"dL/d{pname[0].upper() if pname == 'weight' else 'b'}",
                                  rec.param_grads[pname], torch_grads[f"{rec.name}.{pname}"], tol_grad))
            for label, ours, theirs, tol in pairs:
                ours = backend.asnumpy(ours).astype(numpy.float64)
                theirs = theirs.detach().double().numpy()
                err = relative_error(ours, theirs)
                ok = err <= tol or float(numpy.max(numpy.abs(ours - theirs))) < floor
                cells.append(f"{err:.1e}" + ("" if ok else "!"))
                if not ok:
                    failures.append(f"torch: {rec.name} {label} error {err:.2e}")
            while len(cells) < 5:
                cells.append("-")
            print(f"{rec.name:<14}{rec.kind:<19}" + "".join(f"{c:>10}" for c in cells))

    # ---- 3. against finite differences (float64, directional) ---------------------------------
    model64 = alexnet("cifar", width=args.width, lrn=args.lrn)
    model64.load_state_dict(initial_state).astype("float64")
    rng = numpy.random.default_rng(args.seed)
    # Flat regions of real photographs (saturated skies, white backgrounds) give exactly equal
    # conv outputs, which tie in max-pool windows: kinks of the loss. A dither of 1e-3 (far below
    # one grey level, 1/255/0.25 = 0.016 after normalisation) breaks the ties.
    x64 = x.astype(numpy.float64) + 1e-3 * rng.standard_normal(x.shape)
    npalexnet.manual_seed(args.seed)
    trace64 = trace_step(model64, x64, y, criterion)

    def loss64():
        npalexnet.manual_seed(args.seed)     # the same dropout masks on every evaluation
        return float(criterion(model64(x64), y))

    print(f"\n== Against finite differences (float64, {args.directions} directions each, h=1e-6, "
          f"batch dithered by 1e-3 to break exact ties; pass: error <= {FD_TOLERANCE:g}) ==")
    header = f"{'Layer':<14}{'Type':<19}{'dL/dy':>10}{'dL/dW':>10}{'dL/db':>10}"
    print(header + "\n" + "-" * len(header))
    for rec in trace64:
        cells = []
        err = output_directional_error(model64, criterion, x64, y, rec, rng, args.seed, args.directions)
        checks = [("dL/dy", err)]
        for pname in ("weight", "bias"):
            if pname in rec.param_grads:
                p = getattr(rec.module, pname)
                checks.append((f"dL/d{pname}", directional_error(loss64, p.data, rec.param_grads[pname], rng,
                                                                 args.directions)))
        for label, err in checks:
            ok = err <= FD_TOLERANCE
            cells.append(f"{err:.1e}" + ("" if ok else "!"))
            if not ok:
                failures.append(f"finite differences: {rec.name} {label} error {err:.2e}")
        while len(cells) < 3:
            cells.append("-")
        print(f"{rec.name:<14}{rec.kind:<19}" + "".join(f"{c:>10}" for c in cells))
    err = directional_error(loss64, x64, trace64.records[0].grad_input, rng, args.directions)
    print(f"{'input':<14}{'(the images)':<19}{err:>9.1e}" + ("" if err <= FD_TOLERANCE else "!"))
    if err > FD_TOLERANCE:
        failures.append(f"finite differences: input gradient error {err:.2e}")
    if KINKS["redrawn"]:
        print(f"({KINKS['redrawn']} direction(s) crossed a kink, a ReLU or max-pool switching within h, "
              f"and were drawn again)")

    # ---- 4. the update ------------------------------------------------------------------------
    model.zero_grad()
    npalexnet.manual_seed(args.seed)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    trace_step(model, x, y, criterion, optimizer)
    model.eval()
    after = float(criterion(model(x), y))
    model.load_state_dict(initial_state)
    before = float(criterion(model(x), y))
    print(f"\nOne SGD step (lr {args.lr}): loss on this batch (dropout off) {before:.5f} -> {after:.5f}")

    if failures:
        print(f"\n{len(failures)} check(s) FAILED:\n  " + "\n  ".join(failures))
        return 1
    against = "finite differences" if args.no_torch else "PyTorch and with finite differences"
    print(f"\nAll checks passed: every gradient agrees with {against}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
