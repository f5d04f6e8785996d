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
   gradients, held to the library's float32 tolerance table
   (:func:`npalexnet.gradcheck.torch_compare.compare`);
3. the relative error of every gradient against finite differences in
   float64, along directions (:func:`npalexnet.gradcheck.along_directions`):
   parameter gradients by perturbing the parameter, each layer's upstream
   gradient dL/dy by perturbing that layer's *output* with a forward hook
   that returns ``y + h v``. The float64 batch is dithered by 1e-3 so that
   flat image regions do not produce exact ties in max-pool windows, and a
   direction whose segment crosses a kink (a ReLU or a max-pool switching
   within h) is drawn again.

It then applies one SGD step. The exit status is 1 if any check fails, 2 for
unreadable data. The batch is read through :mod:`npalexnet.data`
(``--data-dir``, else ``data/cifar10``, ``data``); only when no CIFAR-10 data
is found does it run on a random batch, and says so.
"""

from __future__ import annotations

import argparse
import sys

import numpy

import npalexnet
from npalexnet import backend, nn, optim
from npalexnet.gradcheck import TOLERANCE_NETWORK, along_directions, shifted
from npalexnet.inspect import trace_step
from npalexnet.inspect.batch import study_batch_for_script
from npalexnet.models import alexnet


def output_directional_check(model, criterion, x, y, rec, rng, seed, directions=2):
    """:func:`~npalexnet.gradcheck.along_directions` for dL/d(output of a layer): a forward hook adds
    the shift to the output.

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
    return along_directions(evaluate, rec.grad_output, rng, live=live, directions=directions,
                            tolerance=TOLERANCE_NETWORK)


def torch_step(model, x, y, label_smoothing):
    """The same step in PyTorch; per-layer output, grad_output, grad_input and parameter grads."""
    import torch

    from npalexnet.gradcheck.torch_twin import to_tensor, to_torch
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

    batch = study_batch_for_script(args.data_dir, args.batch_size, "train", args.seed)
    x, y = batch.x, batch.y
    print(f"batch: {x.shape[0]} images {tuple(x.shape[1:])} from {batch.source}; labels "
          f"{', '.join(batch.classes[int(t)] for t in y[:8])}{', ...' if len(y) > 8 else ''}")

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
        from npalexnet.gradcheck.torch_compare import compare, sum_bound, tolerances

        # Re-run our forward so each dropout layer holds this step's mask for the twin to replay.
        tol_value, tol_grad = tolerances(numpy.float32)
        model.zero_grad()
        npalexnet.manual_seed(args.seed)
        model(x)
        seen, torch_grads, torch_loss = torch_step(model, x, y, args.label_smoothing)
        model.zero_grad()   # drop that forward's caches' gradients; the trace holds the step's
        print(f"\n== Against PyTorch autograd (float32 tolerance table: error <= {tol_value:g} for outputs, "
              f"{tol_grad:g} for gradients; * a bias gradient within the bound of a sum) ==")
        print(f"loss: npalexnet {trace.loss:.7f}, torch {torch_loss:.7f}")
        header = f"{'Layer':<14}{'Type':<19}{'output':>10}{'dL/dy':>10}{'dL/dx':>10}{'dL/dW':>10}{'dL/db':>10}"
        print(header + "\n" + "-" * len(header))
        for rec in trace:
            t = seen[rec.name]
            gradients = {"dL/dy": (rec.grad_output, t["grad_output"]), "dL/dx": (rec.grad_input, t["grad_input"])}
            bounds = {}
            if "weight" in rec.param_grads:
                gradients["dL/dW"] = (rec.param_grads["weight"], torch_grads[f"{rec.name}.weight"])
            if "bias" in rec.param_grads:
                gradients["dL/db"] = (rec.param_grads["bias"], torch_grads[f"{rec.name}.bias"])
                bounds["dL/db"] = sum_bound(rec.grad_output, t["grad_output"], numpy.float32)
            comparison = compare({"output": (rec.output, t["output"])}, gradients, numpy.float32,
                                 sum_bounds=bounds, subject=rec.name)
            cells = []
            for label, err in comparison.errors.items():
                mark = ("!" if label in comparison.failures else "*" if label in comparison.within_sum_bound
                        else "")
                cells.append(f"{err:.1e}{mark}")
            failures += [f"torch: {rec.name} {label} error {err:.2e}" for label, err in comparison.failures.items()]
            cells += ["-"] * (5 - len(cells))
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

    def check_array(array, analytic):
        return along_directions(shifted(loss64, array), analytic, rng, directions=args.directions,
                                tolerance=TOLERANCE_NETWORK)

    print(f"\n== Against finite differences (float64, {args.directions} directions each, h=1e-6, "
          f"batch dithered by 1e-3 to break exact ties; pass: error <= {TOLERANCE_NETWORK:g}) ==")
    header = f"{'Layer':<14}{'Type':<19}{'dL/dy':>10}{'dL/dW':>10}{'dL/db':>10}"
    print(header + "\n" + "-" * len(header))
    redrawn = 0
    for rec in trace64:
        checks = [("dL/dy", output_directional_check(model64, criterion, x64, y, rec, rng, args.seed,
                                                     args.directions))]
        for pname in ("weight", "bias"):
            if pname in rec.param_grads:
                checks.append((f"dL/d{pname}", check_array(getattr(rec.module, pname).data,
                                                           rec.param_grads[pname])))
        cells = []
        for label, result in checks:
            redrawn += result.redrawn
            ok = result.error <= TOLERANCE_NETWORK
            cells.append(f"{result.error:.1e}" + ("" if ok else "!"))
            if not ok:
                failures.append(f"finite differences: {rec.name} {label} error {result.error:.2e}")
        cells += ["-"] * (3 - len(cells))
        print(f"{rec.name:<14}{rec.kind:<19}" + "".join(f"{c:>10}" for c in cells))
    result = check_array(x64, trace64.records[0].grad_input)
    redrawn += result.redrawn
    print(f"{'input':<14}{'(the images)':<19}{result.error:>9.1e}" + ("" if result.error <= TOLERANCE_NETWORK else "!"))
    if result.error > TOLERANCE_NETWORK:
        failures.append(f"finite differences: input gradient error {result.error:.2e}")
    if redrawn:
        print(f"({redrawn} direction(s) crossed a kink, a ReLU or max-pool switching within h, "
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
