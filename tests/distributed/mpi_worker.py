"""Run under ``mpiexec -n R python tests/distributed/mpi_worker.py MODE OUT.json`` by the tests.

Modes:
    equivalence: train a tiny CIFAR AlexNet (float64, dropout on) on R ranks and,
        in the same process, on one; rank 0 writes the comparison to OUT.json.
    crash: rank 1 raises after one step while rank 0 waits in an allreduce;
        the abort hook must end both.
    mismatch: the ranks report different data paths; every rank must exit 2
        with one message, printed by rank 0.
    nccl: (GPU) the NCCL communicator's collectives on CuPy arrays, and one
        data-parallel step of a CuPy model against the NumPy one-process step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys

import numpy

import npalexnet
from npalexnet import distributed, nn, optim
from npalexnet.gradcheck import relative_error
from npalexnet.models import alexnet
from npalexnet.train import train_step

SEED = 1234


@dataclasses.dataclass
class Record:
    """A dataclass holding an array, as a checkpoint does."""

    name: str
    values: numpy.ndarray


SAMPLES, BATCH, EPOCHS = 20, 7, 2    # batches of 7, 7, 6: shares 4/3, 4/3, 3/3 on two ranks


def build(seed: int):
    npalexnet.manual_seed(seed)
    model = alexnet("cifar", width=0.125).astype(numpy.float64)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return model, opt


def data():
    rng = numpy.random.default_rng(7)
    return rng.standard_normal((SAMPLES, 3, 32, 32)), rng.integers(0, 10, SAMPLES)


def train(model, opt, images, labels, parallel, sam_radius=0.0):
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    history = []
    for epoch in range(EPOCHS):
        for batch in distributed.global_batches(SAMPLES, BATCH, SEED, epoch):
            mine = parallel.local_batch(batch)
            loss_sum, _, _ = train_step(model, loss_fn, opt, images[mine], labels[mine], mine,
                                        seed=SEED, epoch=epoch, parallel=parallel, global_count=len(batch),
                                        sam_radius=sam_radius)
            history.append(loss_sum)
    return history


def evaluate(model, images, labels, comm):
    model.eval()
    mine = distributed.local_slice(numpy.arange(SAMPLES), comm.rank, comm.size)
    loss_fn = nn.CrossEntropyLoss()
    logits = model(images[mine])
    loss = float(loss_fn(logits, labels[mine]))
    correct = int((logits.argmax(axis=1) == labels[mine]).sum())
    return distributed.allreduce_sums(comm, loss * len(mine), correct, len(mine))


def equivalence(comm, out):
    images, labels = data()
    # Rank r > 0 starts from other weights: the broadcast must fix that.
    model, opt = build(0 if comm.rank == 0 else 100 + comm.rank)
    parallel = distributed.DataParallel(model, comm)
    parallel.broadcast_initial_state()
    train(model, opt, images, labels, parallel)

    reference, ref_opt = build(0)
    initial = {k: v.copy() for k, v in reference.state_dict().items()}
    train(reference, ref_opt, images, labels,
          distributed.DataParallel(reference, distributed.SingleProcessCommunicator()))

    errors = {k: relative_error(v, reference.state_dict()[k]) for k, v in model.state_dict().items()}
    moved = max(relative_error(v, initial[k]) for k, v in reference.state_dict().items())
    digest = hashlib.sha256(b"".join(p.data.tobytes() for p in model.parameters())).hexdigest()
    digests = comm.allgather_object(digest)

    sums = evaluate(model, images, labels, distributed.SingleProcessCommunicator())
    dist_sums = evaluate(model, images, labels, comm)

    # Optimizer state and Python objects from rank 0 (what a resume broadcasts).
    state = {"optimizer": opt.state_dict(), "epoch": 3, "rng": npalexnet.random_streams.get_state(),
             "record": Record("rank0", numpy.arange(3.0))}
    got = distributed.broadcast_tree(state if comm.rank == 0 else None, comm)
    momentum_ok = all(numpy.array_equal(got["optimizer"]["state"][i]["momentum_buffer"],
                                        opt.state_dict()["state"][i]["momentum_buffer"])
                      for i in opt.state_dict()["state"])
    momentum_ok = momentum_ok and got["record"].name == "rank0" and got["record"].values.tolist() == [0, 1, 2]
    momentum_ok = all(comm.allgather_object(momentum_ok)) and got["epoch"] == 3

    # Sharpness-aware steps: the perturbation follows the averaged gradient, the same on every rank.
    sam_model, sam_opt = build(0)
    sam_parallel = distributed.DataParallel(sam_model, comm)
    train(sam_model, sam_opt, images, labels, sam_parallel, sam_radius=0.05)
    sam_ref, sam_ref_opt = build(0)
    train(sam_ref, sam_ref_opt, images, labels,
          distributed.DataParallel(sam_ref, distributed.SingleProcessCommunicator()), sam_radius=0.05)
    sam_error = max(relative_error(v, sam_ref.state_dict()[k]) for k, v in sam_model.state_dict().items())
    sam_vs_plain = max(relative_error(v, reference.state_dict()[k]) for k, v in sam_ref.state_dict().items())

    # BatchNorm running statistics: share-weighted average = one process's running mean.
    npalexnet.manual_seed(5)
    bn_images = numpy.random.default_rng(3).standard_normal((7, 4, 3, 3))
    bn, bn_ref = nn.BatchNorm2d(4).astype(numpy.float64), nn.BatchNorm2d(4).astype(numpy.float64)
    mine = distributed.local_slice(numpy.arange(7), comm.rank, comm.size)
    bn(bn_images[mine])
    distributed.average_buffers(bn, comm, len(mine), 7)
    bn_ref(bn_images)
    bn_mean_error = relative_error(bn.running_mean, bn_ref.running_mean)

    if comm.rank == 0:
        with open(out, "w") as fh:
            json.dump({"size": comm.size, "max_rel_error": max(errors.values()), "errors": errors,
                       "moved": moved, "identical_across_ranks": len(set(digests)) == 1,
                       "eval_single": sums, "eval_distributed": dist_sums,
                       "broadcast_tree_ok": bool(momentum_ok), "bn_running_mean_error": bn_mean_error,
                       "sam_max_rel_error": sam_error, "sam_vs_plain": sam_vs_plain},
                      fh, indent=1)


def crash(comm, out):
    if comm.rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    comm.allreduce(numpy.zeros(4))   # rank 0 would wait here forever without the abort
    comm.allreduce(numpy.zeros(4))


def mismatch(comm, out):
    distributed.check_consistent(comm, npalexnet=npalexnet.__version__, data=f"/data/path-{comm.rank}")


def nccl(comm, out):
    """GPU: the NCCL communicator (or MPI with host staging), CuPy buffers, a CuPy model."""
    import cupy

    buf = cupy.arange(6, dtype=cupy.float32) * (comm.rank + 1)
    comm.allreduce(buf)
    total = sum(r + 1 for r in range(comm.size))
    arr = cupy.full(5, comm.rank, dtype=cupy.float64)
    comm.broadcast(arr, root=0)
    model, opt = build(0)
    model.to("cuda")
    images, labels = data()
    parallel = distributed.DataParallel(model, comm)
    parallel.broadcast_initial_state()
    batch = numpy.arange(BATCH)
    mine = parallel.local_batch(batch)
    train_step(model, nn.CrossEntropyLoss(), opt, cupy.asarray(images[mine]),
               cupy.asarray(labels[mine]), mine, seed=SEED, epoch=0, parallel=parallel,
               global_count=len(batch))
    reference, ref_opt = build(0)
    train_step_host = train_step(reference, nn.CrossEntropyLoss(), ref_opt, images[batch], labels[batch], batch,
                                 seed=SEED, epoch=0,
                                 parallel=distributed.DataParallel(reference, distributed.SingleProcessCommunicator()))
    errors = [relative_error(npalexnet.asnumpy(a.data), b.data)
              for a, b in zip(model.parameters(), reference.parameters())]
    if comm.rank == 0:
        with open(out, "w") as fh:
            json.dump({"name": comm.name, "allreduce_ok": bool((buf == cupy.arange(6) * total).all()),
                       "broadcast_ok": bool((arr == 0).all()), "max_rel_error": max(errors),
                       "loss": train_step_host[0]}, fh)


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if os.environ.get("NPALEXNET_TEST_BLOCK_MPI4PY"):   # as if mpi4py were not installed
        sys.modules["mpi4py"] = None
    comm = distributed.init(True, "cuda" if mode == "nccl" else "cpu")
    distributed.install_abort_on_exception(comm)
    {"equivalence": equivalence, "crash": crash, "mismatch": mismatch, "nccl": nccl}[mode](comm, out)


if __name__ == "__main__":
    distributed.run(main)
