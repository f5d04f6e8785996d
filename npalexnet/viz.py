"""Pictures of a trained network: conv1 filters, confusion matrix, misclassified images.

* :func:`save_conv1_filters`: the first convolution's kernels as an image
  grid, Figure 3 of Krizhevsky, Sutskever and Hinton (2012) ("96
  convolutional kernels of size 11x11x3 learned by the first convolutional
  layer"). With the paper net's two groups, the first 48 kernels (the top
  half of the default 16-column grid) feed the first half of conv2, the
  other 48 the second: the paper's GPU 1 and GPU 2, where it observed
  colour-agnostic kernels on one GPU and colour-specific ones on the other.
* :func:`confusion_matrix` and :func:`save_confusion_matrix`: counts of
  (true class, predicted class) over a test set, drawn with each row
  normalised to the class's recall.
* :func:`save_misclassified`: a grid of misclassified test images titled
  with their predicted and true labels.
* :func:`save_norm_curves`: per-layer gradient and weight norms over
  training (from :func:`npalexnet.inspect.parameter_norms`, one per epoch).

PNG files are written with Pillow (filters) and matplotlib (the others, on
its non-interactive Agg backend). The training curves are drawn by the
training pipeline (:func:`npalexnet.train.history.plot_curves`).
"""

from __future__ import annotations

from pathlib import Path

import numpy

from . import backend
from .data import CIFAR10_MEAN, CIFAR10_STD


# ----------------------------------------------------------------------------- conv1 filters
def first_conv_weight(source):
    """The first convolution's weight (OC, C, KH, KW) as a host array.

    ``source``: an npalexnet Module, a state dict (name -> array), or the
    path of a checkpoint ``.npz`` (the training program's, whose model
    entries are ``model/<name>``, or a plain ``numpy.savez`` of a state dict).
    """
    if hasattr(source, "modules"):
        from . import nn
        for m in source.modules():
            if isinstance(m, nn.Conv2d):
                return backend.asnumpy(m.weight.data)
        raise ValueError(f"{type(source).__name__} has no Conv2d layer")
    if isinstance(source, (str, Path)):
        with numpy.load(source, allow_pickle=False) as z:
            names = list(z.files)
            prefixed = [n for n in names if n.startswith("model/")]
            names = prefixed or names
            state = {n[len("model/"):] if prefixed else n: z[n] for n in names}
    else:
        state = {k: backend.asnumpy(v) for k, v in source.items()}
    for name, value in state.items():   # state_dict order is forward order: the first 4-D weight is conv1
        if name.endswith("weight") and getattr(value, "ndim", 0) == 4:
            return numpy.asarray(value)
    raise ValueError("no 4-D convolution weight found")


def filter_grid(weight, cols: int = 16, scale: int = 4, pad: int = 1, per_filter: bool = True):
    """Tile filters (OC, C, KH, KW) into one uint8 image (rows, cols, 3) or (rows, cols) for C = 1.

    Each filter is min-max scaled to [0, 255] on its own (``per_filter``), as
    in the paper's figure, or all with one scale; then enlarged ``scale``
    times (nearest neighbour) and separated by ``pad`` white pixels.
    Image size: ``cols*(KW*scale + pad) + pad`` wide,
    ``ceil(OC/cols)*(KH*scale + pad) + pad`` high. Channels beyond 3 show
    the first 3.
    """
    w = backend.asnumpy(weight).astype(numpy.float64)   # NumPy or CuPy (a device array is copied)
    oc, c, kh, kw = w.shape
    w = w[:, :3] if c >= 3 else w[:, :1]
    axes = (1, 2, 3)
    lo = w.min(axis=axes, keepdims=True) if per_filter else w.min()
    hi = w.max(axis=axes, keepdims=True) if per_filter else w.max()
    w = (w - lo) / numpy.maximum(hi - lo, 1e-12)
    cols = max(1, min(cols, oc))
    rows = -(-oc // cols)
    ch, cw = kh * scale, kw * scale
    channels = w.shape[1]
    grid = numpy.ones((rows * (ch + pad) + pad, cols * (cw + pad) + pad, channels))
    for i in range(oc):
        r, col = divmod(i, cols)
        tile = w[i].transpose(1, 2, 0).repeat(scale, axis=0).repeat(scale, axis=1)
        y0, x0 = pad + r * (ch + pad), pad + col * (cw + pad)
        grid[y0:y0 + ch, x0:x0 + cw] = tile
    grid = (grid * 255).round().astype(numpy.uint8)
    return grid[:, :, 0] if channels == 1 else grid


def save_conv1_filters(source, path, cols: int = 16, scale: int = 4, pad: int = 1, per_filter: bool = True):
    """Write the conv1 filter grid of ``source`` (model, state dict or checkpoint path) as a PNG.

    Returns the path. See :func:`filter_grid` for the layout and size.
    """
    import io

    from PIL import Image

    from .data.atomic import atomic_write_bytes
    grid = filter_grid(first_conv_weight(source), cols, scale, pad, per_filter)
    png = io.BytesIO()
    Image.fromarray(grid).save(png, format="PNG")
    return atomic_write_bytes(path, png.getvalue())


# ----------------------------------------------------------------------------- evaluation
def predict(model, x, batch_size: int = 256):
    """Predicted classes (N,) of ``model`` on normalised inputs ``x`` (N, C, H, W), in eval mode.

    The model's train/eval mode is restored afterwards; inputs move to the
    model's device batch by batch.
    """
    was_training = model.training
    model.eval()
    xp = backend.xp_for(model.device)
    out = []
    try:
        for i in range(0, len(x), batch_size):
            logits = model(xp.asarray(x[i:i + batch_size], dtype=model.dtype))
            out.append(backend.asnumpy(logits.argmax(axis=1)))
    finally:
        model.train(was_training)
    return numpy.concatenate(out) if out else numpy.zeros(0, dtype=numpy.int64)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None):
    """``cm[t, p]`` = number of examples of true class t predicted as p; (K, K) int64."""
    y_true = numpy.asarray(backend.asnumpy(y_true), dtype=numpy.int64)
    y_pred = numpy.asarray(backend.asnumpy(y_pred), dtype=numpy.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: {y_true.shape} true labels but {y_pred.shape} predictions")
    k = num_classes or int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    cm = numpy.zeros((k, k), dtype=numpy.int64)
    numpy.add.at(cm, (y_true, y_pred), 1)
    return cm


def save_figure(fig, path) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file, then rename) and close it.

    A crash or Ctrl-C while saving leaves the previous picture, never half a file.
    The PNG is drawn in memory first, so a full disk is reported with its size
    (:class:`npalexnet.data.atomic.NoSpaceError`).
    """
    import io

    from .data.atomic import atomic_write_bytes  # here: npalexnet.data is not needed to import viz

    plt = pyplot()
    try:
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100)
        return atomic_write_bytes(path, png.getvalue())
    finally:
        plt.close(fig)


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend (servers have no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_confusion_matrix(cm, classes, path, title: str = "Confusion matrix (test set)"):
    """Draw ``cm`` (K, K), rows normalised to recall, counts written in each cell; returns the path."""
    plt = pyplot()
    cm = numpy.asarray(cm)
    k = cm.shape[0]
    classes = list(classes) if classes is not None else [str(i) for i in range(k)]
    recall = cm / numpy.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = numpy.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title}\naccuracy {accuracy:.2%} over {int(cm.sum())} images")
    if k <= 20:
        for t in range(k):
            for p in range(k):
                ax.text(p, t, str(int(cm[t, p])), ha="center", va="center", fontsize=8,
                        color="white" if recall[t, p] > 0.5 else "black")
    return save_figure(fig, path)


def save_misclassified(images, y_true, y_pred, classes, path, max_images: int = 36, cols: int = 6,
                       mean=None, std=None):
    """A grid of misclassified images, each titled "pred: X / true: Y"; returns (path, count shown).

    Inputs:
        images: (N, C, H, W) uint8, or normalised floats with the ``mean``
            and ``std`` they were normalised with (CIFAR-10's by default).
        y_true, y_pred: (N,) class indices. classes: names.
    The first ``max_images`` mistakes, in dataset order, are shown.
    """
    plt = pyplot()
    images = backend.asnumpy(images)
    y_true, y_pred = backend.asnumpy(y_true), backend.asnumpy(y_pred)
    wrong = numpy.flatnonzero(y_true != y_pred)[:max_images]
    n = len(wrong)
    cols = max(1, min(cols, n or 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if images.dtype == numpy.uint8:
        pictures = images.astype(numpy.float32) / 255.0
    else:
        m = numpy.asarray(CIFAR10_MEAN if mean is None else mean, dtype=numpy.float32).reshape(1, -1, 1, 1)
        s = numpy.asarray(CIFAR10_STD if std is None else std, dtype=numpy.float32).reshape(1, -1, 1, 1)
        pictures = numpy.clip(images * s + m, 0.0, 1.0)
    for ax, i in zip(axes.flat, wrong):
        img = pictures[i].transpose(1, 2, 0)
        ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                  interpolation="nearest")
        ax.set_title(f"pred: {classes[int(y_pred[i])]}\ntrue: {classes[int(y_true[i])]}", fontsize=8,
                     color="tab:red")
    if n == 0:
        axes.flat[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.suptitle(f"Misclassified test images ({n} shown of {int((y_true != y_pred).sum())})")
    return save_figure(fig, path), n


# ----------------------------------------------------------------------------- norms over training
def save_norm_curves(norms, path, title: str = "Gradient and weight norms per layer"):
    """Per-parameter gradient norms, weight norms and their ratio over training, one PNG.

    Inputs:
        norms: a list (one entry per epoch, or per logged step) of
            ``{name: {"grad": float or None, "weight": float}}``, as
            :func:`npalexnet.inspect.parameter_norms` returns.
    Weights only (biases are left out, for legibility), on log axes: a
    gradient norm falling by orders of magnitude towards the first layers
    is a vanishing gradient; the rule of thumb for a healthy step is an
    update ``lr * |dL/dW|`` near 1e-3 of ``|W|``.
    Returns the path.
    """
    plt = pyplot()
    names = [n for n in (norms[0] if norms else {}) if n.endswith("weight")]
    x = numpy.arange(1, len(norms) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(names):
        color = cmap(i / max(len(names) - 1, 1))
        grad = numpy.array([numpy.nan if e[name]["grad"] is None else e[name]["grad"] for e in norms])
        weight = numpy.array([e[name]["weight"] for e in norms])
        axes[0].semilogy(x, grad, color=color, label=name)
        axes[1].semilogy(x, weight, color=color, label=name)
        axes[2].semilogy(x, grad / weight, color=color, label=name)
    for ax, label in zip(axes, ("|dL/dW|", "|W|", "|dL/dW| / |W|")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if names:
        axes[2].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return save_figure(fig, path)
