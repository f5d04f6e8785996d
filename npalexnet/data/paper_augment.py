"""The paper's augmentation (Section 4.1 of Krizhevsky et al. 2012), batched on the device.

Notation: B images of a batch, C = 3 channels, S the stored size (256), W the
crop (patch) size, O the net's input size; pixel values ``I`` scaled to [0, 1].

Training (:meth:`PaperAugment.train`), per image:

1. "extracting random 224 x 224 patches (and their horizontal reflections)
   from the 256 x 256 images": a W x W patch at an origin drawn uniformly from
   [0, S - W]^2, mirrored left-right with probability 1/2. W defaults to the
   net's input O (227 for the ``paper`` variant: the paper's 224 does not fit
   its own conv1 arithmetic, (224 - 11)/4 + 1 is not an integer, and Caffe's
   reference model crops 227; the ``torchvision`` variant takes 224).
2. The colour augmentation: "to each training image, we add multiples of the
   found principal components, with magnitudes proportional to the
   corresponding eigenvalues times a random variable drawn from a Gaussian
   with mean zero and standard deviation 0.1". To every pixel
   :math:`I_{xy} = [I^R_{xy}, I^G_{xy}, I^B_{xy}]^T` of the image add

   .. math::
       [\\mathbf{p}_1, \\mathbf{p}_2, \\mathbf{p}_3]\\,
       [\\alpha_1 \\lambda_1, \\alpha_2 \\lambda_2, \\alpha_3 \\lambda_3]^T

   with :math:`\\mathbf{p}_i, \\lambda_i` the i-th eigenvector and eigenvalue
   of the 3 x 3 covariance of the training set's pixel values (computed once,
   from the store: :class:`~.store.PixelStats`) and :math:`\\alpha_i \\sim
   N(0, 0.1)` drawn once per image per epoch ("each :math:`\\alpha_i` is drawn
   only once for all the pixels of a particular training image until that
   image is used for training again"). The eigenvalues are those of pixel
   values in [0, 1] and the shift is added in that scale (about 0.01, a few
   grey levels in 255): with 0-255 values and their eigenvalues the same
   formula would shift by hundreds of grey levels.
3. ``(I - mean) / std`` per channel. The paper "subtract[s] the mean activity
   over the training set from each pixel" and divides by nothing: the paper
   recipe passes ``std = 1/255`` (inputs in grey levels minus the mean), the
   scale its N(0, 0.01) initialisation was made for.
4. A resize to O when W differs from O (small stores, e.g. 64 px in the tests).

The crop origins, reflections and :math:`\\alpha` come from
:mod:`npalexnet.random_streams`, keyed by (seed, epoch, image index), and are
drawn on the host, so an image is augmented the same on any rank, at any
step, on NumPy or CuPy.

Evaluation (:meth:`PaperAugment.eval`) returns the whole S x S image
normalised; the views (the centre patch, or the paper's ten: four corner
patches, the centre patch and their reflections) are cut from it by
:func:`npalexnet.train.evaluate.tta_views`.
"""

from __future__ import annotations

import numpy

from .. import random_streams
from ..backend import get_array_module
from .augment import RESIZE_MODES, crop_flip, normalize, resize


def default_crop(stored: int, out_size: int) -> int:
    """W: the net's input when the stored images are at least that large, else the paper's 224/256 of S."""
    return out_size if stored >= out_size else max(1, int(round(stored * 224 / 256)))


def lighting_alphas(seed: int, epoch: int, indices, channels: int = 3, std: float = 0.1) -> numpy.ndarray:
    """:math:`\\alpha` ~ N(0, std^2): (B, C) host float64, one row per image (Section 4.1)."""
    return std * random_streams.normal(seed, epoch, numpy.asarray(indices), random_streams.LIGHTING_STREAM,
                                       (channels,))


def lighting_shift(alphas, eigvals, eigvecs) -> numpy.ndarray:
    """The colour shift of each image: :math:`\\sum_i \\alpha_i \\lambda_i \\mathbf{p}_i`.

    Args:
        alphas: (B, C). eigvals: (C,). eigvecs: (C, C), column i is :math:`\\mathbf{p}_i`.
    Returns:
        (B, C) host float64, added to every pixel of the image (values in [0, 1]).
    """
    return (numpy.asarray(alphas) * numpy.asarray(eigvals)[None, :]) @ numpy.asarray(eigvecs).T


class PaperAugment:
    """The paper-mode transforms of one run; the interface of :class:`~.augment.Preprocess`.

    Args:
        mean, std: per channel, for pixels in [0, 1] (``std = 1/255``: the paper's inputs).
        eigvals, eigvecs: the PCA of the training pixels (:class:`~.store.PixelStats`).
        out_size: O, the net's input.
        stored: S, the stored images' size.
        crop: W (default :func:`default_crop`).
        flip: random reflections in training.
        flip_schedule: ``"random"`` or ``"alternating"``
            (:func:`npalexnet.random_streams.crop_flip_params`).
        lighting: the standard deviation of :math:`\\alpha` (the paper's 0.1; 0 switches it off).
        resize_mode: how W is resized to O when they differ.
        dtype: floating dtype of the net's input.
    """

    def __init__(self, mean, std, eigvals, eigvecs, out_size: int, stored: int, *, crop: int | None = None,
                 flip: bool = True, flip_schedule: str = "random", lighting: float = 0.1,
                 resize_mode: str = "bilinear", dtype=numpy.float32):
        crop = default_crop(stored, out_size) if crop is None else int(crop)
        if not 1 <= crop <= stored:
            raise ValueError(f"the crop size must be in [1, {stored}] (the stored images' size), got {crop}")
        if lighting < 0:
            raise ValueError(f"the colour augmentation's standard deviation must be >= 0, got {lighting}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize_mode!r}: expected one of {', '.join(RESIZE_MODES)}")
        self.mean, self.std = tuple(mean), tuple(std)
        self.eigvals = numpy.asarray(eigvals, dtype=numpy.float64)
        self.eigvecs = numpy.asarray(eigvecs, dtype=numpy.float64)
        self.out_size, self.stored, self.crop = int(out_size), int(stored), crop
        self.flip, self.lighting = bool(flip), float(lighting)
        self.flip_schedule = random_streams.check_flip_schedule(flip_schedule)
        self.resize_mode, self.dtype = resize_mode, dtype

    def train(self, images, seed: int, epoch: int, indices):
        """(B, C, S, S) uint8 -> (B, C, O, O) float: patch, reflection, colour shift, normalisation, resize.

        ``indices`` ((B,) host ints) are the images' indices in the training
        split: they key every random number (see the module doc).
        """
        xp = get_array_module(images)
        oy, ox, flips = random_streams.crop_flip_params(seed, epoch, indices, flip=self.flip,
                                                        positions=self.stored - self.crop + 1,
                                                        flip_schedule=self.flip_schedule)
        x = crop_flip(images, xp.asarray(oy), xp.asarray(ox), xp.asarray(flips), 0, size=self.crop)
        x = normalize(x, self.mean, self.std, self.dtype)
        if self.lighting:
            # (I + shift - mean) / std = normalize(I) + shift / std
            shift = lighting_shift(lighting_alphas(seed, epoch, indices, images.shape[1], self.lighting),
                                   self.eigvals, self.eigvecs) / numpy.asarray(self.std)[None, :]
            x += xp.asarray(shift, dtype=x.dtype)[:, :, None, None]
        return resize(x, self.out_size, self.resize_mode)

    def eval(self, images):
        """(B, C, S, S) uint8 -> (B, C, S, S) float normalised: the views are cut from it."""
        return normalize(images, self.mean, self.std, self.dtype)
