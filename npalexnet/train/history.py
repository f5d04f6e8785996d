"""The per-epoch record of a run: ``metrics.csv`` and a PNG of the curves.

Both files are rewritten whole (atomically) from the history saved in the
checkpoint after every epoch, so after a crash and ``--resume`` they hold
exactly the epochs of the checkpoint: no duplicated or missing rows.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..data.atomic import atomic_write_text
from ..viz import pyplot, save_figure

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds", "images_per_s",
           "val_top5")
METRICS_CSV, CURVES_PNG, NORMS_PNG = "metrics.csv", "curves.png", "norms.png"

#: Column prefixes of ``--log-grad-norms``: ``grad_norm:<parameter name>``, ``weight_norm:<parameter name>``.
GRAD_NORM, WEIGHT_NORM = "grad_norm:", "weight_norm:"


def norm_columns(norms: dict) -> dict:
    """Flatten :func:`npalexnet.inspect.parameter_norms` into metrics.csv columns."""
    row = {}
    for name, entry in norms.items():
        row[GRAD_NORM + name] = entry["grad"]
        row[WEIGHT_NORM + name] = entry["weight"]
    return row


def norms_from_history(history: list[dict]) -> list[dict]:
    """The inverse of :func:`norm_columns` for every epoch that logged norms (for the plot)."""
    out = []
    for row in history:
        names = [k[len(WEIGHT_NORM):] for k in row if k.startswith(WEIGHT_NORM)]
        if names:
            out.append({n: {"grad": row.get(GRAD_NORM + n), "weight": row[WEIGHT_NORM + n]} for n in names})
    return out


def write_metrics_csv(path, history: list[dict]) -> Path:
    """One row per epoch with :data:`COLUMNS`, then any norm columns (empty cells for missing values)."""
    extra = []
    for row in history:
        extra += [k for k in row if k.startswith((GRAD_NORM, WEIGHT_NORM)) and k not in extra]
    columns = COLUMNS + tuple(extra)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return atomic_write_text(path, buffer.getvalue())


def read_metrics_csv(path) -> list[dict]:
    """The rows of a ``metrics.csv`` as dicts of floats (None for empty cells)."""
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(f)]


def plot_curves(path, history: list[dict], title: str = "") -> Path:
    """Loss and accuracy (train, validation top-1 and top-5) against the epoch, as a PNG."""
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, ax, scale in (("train_loss", "train", ax_loss, 1), ("val_loss", "validation", ax_loss, 1),
                                  ("train_acc", "train", ax_acc, 100), ("val_acc", "validation", ax_acc, 100),
                                  ("val_top5", "validation top-5", ax_acc, 100)):
        points = [(e, r[key] * scale) for e, r in zip(epochs, history) if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
