"""Data-parallel training across processes (MPI via mpi4py) and GPUs (NCCL via CuPy).

Modules, one job each:

* :mod:`.communicator`: the interface and the single-process implementation;
* :mod:`.mpi`, :mod:`.nccl`: the MPI and NCCL implementations (optional
  dependencies, imported only when used);
* :mod:`.launch`: choosing the communicator, consistency checks between
  ranks, abort-on-exception, setup errors;
* :mod:`.gradients`: share-weighted gradient averaging in one fused buffer;
* :mod:`.state`: broadcasts from rank 0, averaged BatchNorm statistics, summed metrics;
* :mod:`.data_parallel`: the per-step glue a training loop calls;
* :mod:`.collective`: a step on rank 0 (or rank 0 first) whose errors reach every rank.

The shared shuffle and each rank's slice of a global batch are
:mod:`npalexnet.data.sampling`'s; randomness that must not depend on the
number of ranks (dropout masks, augmentation) comes from
:mod:`npalexnet.random_streams`.
"""

from .collective import any_rank, on_root, root_first
from .communicator import Communicator, DistributedSetupError, SingleProcessCommunicator
from .data_parallel import DataParallel, train_step
from .gradients import FusedBuffer, GradientAverager, shares
from .launch import (
                     check_consistent,
                     init,
                     install_abort_on_exception,
                     launcher_rank,
                     report_setup_error,
                     run,
                     select_local_gpu,
)
from ..data.sampling import epoch_order, global_batches, local_slice, shard_bounds, shard_counts
from .state import allreduce_sums, average_buffers, broadcast_module, broadcast_tree

__all__ = [
    "Communicator", "DataParallel", "any_rank", "on_root", "root_first", "DistributedSetupError", "FusedBuffer", "GradientAverager",
    "SingleProcessCommunicator", "allreduce_sums", "average_buffers", "broadcast_module",
    "broadcast_tree", "check_consistent", "epoch_order", "global_batches", "init",
    "install_abort_on_exception", "launcher_rank", "local_slice", "report_setup_error", "run",
    "select_local_gpu", "shard_bounds", "shard_counts", "shares", "train_step",
]
