"""Training: the loop, evaluation, checkpoints, metrics, and ``fit`` that runs them all.

* :mod:`.config`: ``TrainConfig`` (defaults = the anchor recipe) and the builders
* :mod:`.step`: one training step (``train_step``), the same in one process and on many; the NaN guard
* :mod:`.loop`: one epoch (``train_one_epoch``)
* :mod:`.evaluate`: loss/accuracy with test-time flip averaging
* :mod:`.checkpoint`: atomic ``.npz`` checkpoints, validated on load
* :mod:`.history`: ``metrics.csv`` and the curves PNG
* :mod:`.interrupt`: Ctrl-C as "save and stop"
* :mod:`.run`: ``fit(config)``, a whole run
* :mod:`.predict`: top-k prediction from a checkpoint
"""

from .checkpoint import BEST, LAST, Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .config import SCHEDULES, TrainConfig, build_model, build_optimizer, build_scheduler
from .evaluate import evaluate, predict_proba, softmax
from .loop import EpochStats, train_one_epoch
from .predict import Predictor
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
    "TrainConfig",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "load_checkpoint",
    "predict_proba",
    "save_checkpoint",
    "softmax",
    "train_one_epoch",
    "train_step",
]
