"""Training: the loop, evaluation, checkpoints, metrics, and ``fit`` that runs them all.

* :mod:`.config`: ``TrainConfig`` (defaults = the anchor recipe) and the builders
* :mod:`.step`: one training step (``train_step``), the same in one process and on many; the NaN guard
* :mod:`.loop`: one epoch (``train_one_epoch``)
* :mod:`.evaluate`: loss, top-1/top-5 accuracy, the softmax averaged over a protocol's test-time views
* :mod:`.pipeline`: the data pipeline of a run (in memory or on disk, the transforms, the test views)
* :mod:`.checkpoint`: atomic ``.npz`` checkpoints, validated on load
* :mod:`.history`: ``metrics.csv`` and the curves PNG
* :mod:`.interrupt`: Ctrl-C and SIGTERM as "save and stop"
* :mod:`.runs`: a new folder per run, the checkpoint a ``--resume`` names
* :mod:`.runlog`: the run's log.txt and config.json
* :mod:`.resume`: the saved recipe on resume, and the options a command line changes
* :mod:`.protocol`: the one test protocol (``Protocol``: the views; the weights named) of every test line
* :mod:`.faults`: full disks, unwritable folders, out of memory as one-line errors
* :mod:`.run`: ``fit(config)``, a whole run
* :mod:`.evaluate_only`: ``evaluate_checkpoint``, a saved run's test without training
* :mod:`.predict`: top-k prediction from a checkpoint
* :mod:`.cli`, :mod:`.predict_cli`, :mod:`.visualize_cli`: the programs (``npalexnet-train``, ...)
"""

from .checkpoint import BEST, LAST, Checkpoint, CheckpointError, epoch_checkpoint, load_checkpoint, save_checkpoint
from .config import SCHEDULES, TrainConfig, build_model, build_optimizer, build_scheduler
from .evaluate import evaluate, predict_proba, softmax
from .evaluate_only import evaluate_checkpoint
from .faults import RunError
from .loop import EpochStats, train_one_epoch
from .predict import Predictor
from .protocol import Protocol
from .run import FitResult, TrainingInterrupted, fit
from .step import NonFiniteLossError, train_step

__all__ = [
    "BEST",
    "LAST",
    "SCHEDULES",
    "Checkpoint",
    "CheckpointError",
    "EpochStats",
    "FitResult",
    "NonFiniteLossError",
    "Predictor",
    "Protocol",
    "RunError",
    "TrainConfig",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "epoch_checkpoint",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "predict_proba",
    "save_checkpoint",
    "softmax",
    "train_one_epoch",
    "train_step",
]
