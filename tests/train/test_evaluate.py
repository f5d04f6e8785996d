"""Test-time views: the flip, and the paper's ten views (five crops and their mirror images)."""

import numpy
import pytest

from npalexnet import nn
from npalexnet.train.config import TrainConfig
from npalexnet.data.augment import resize
from npalexnet.train.evaluate import evaluate, predict_proba, scores, softmax, tta_views
from npalexnet.train.protocol import Protocol


def batch(seed=0, shape=(3, 2, 6, 6)):
    return numpy.random.default_rng(seed).standard_normal(shape)


def reflect(i, size):
    """numpy's 'reflect' padding index (the edge is not repeated)."""
    return numpy.abs(i) if i < 0 else (2 * (size - 1) - i if i >= size else i)


def test_ten_views_are_the_centre_and_corner_crops_and_their_mirrors():
    x = batch()
    views = list(tta_views(x, tta=True, crops=2))
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    numpy.testing.assert_array_equal(views[0], x)                 # the centre crop is the image
    numpy.testing.assert_array_equal(views[1], x[..., ::-1])      # then its mirror image
    padded = numpy.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    for k, (oy, ox) in enumerate([(2, 2), (0, 0), (0, 4), (4, 0), (4, 4)]):
        numpy.testing.assert_array_equal(views[2 * k], padded[:, :, oy:oy + 6, ox:ox + 6])
        numpy.testing.assert_array_equal(views[2 * k + 1], padded[:, :, oy:oy + 6, ox:ox + 6][..., ::-1])
    assert reflect(-1, 6) == 1   # the padding rule the crops use


@pytest.mark.parametrize("tta, crops, count", [(False, 0, 1), (True, 0, 2), (False, 1, 5), (True, 1, 10)])
def test_predict_proba_averages_the_softmax_of_every_view(tta, crops, count):
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 4)).astype("float64")
    x = batch(1)
    views = list(tta_views(x, tta, crops))
    assert len(views) == count
    expected = sum(softmax(model(v)) for v in views) / count
    numpy.testing.assert_allclose(predict_proba(model, x, tta=tta, crops=crops), expected, rtol=1e-14)


def test_crops_larger_than_half_the_image_are_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
    with pytest.raises(ValueError, match="crops=3"):
        predict_proba(model, batch().astype(numpy.float32), crops=3)


def test_negative_tta_crops_is_a_config_error():
    with pytest.raises(ValueError, match="--tta-crops"):
        TrainConfig(tta_crops=-1).validate()


def test_paper_views_are_the_corner_and_centre_patches_of_the_stored_image_and_their_reflections():
    """Section 4.1: "extracting five 224x224 patches (the four corner patches and the center patch)
    as well as their horizontal reflections" of the 256x256 image, here 7 of 10."""
    x = batch(2, (2, 3, 10, 10))
    views = list(tta_views(x, protocol=Protocol(mirror=True, five=True, window=7)))
    assert len(views) == 10 and all(v.shape == (2, 3, 7, 7) for v in views)
    for k, (oy, ox) in enumerate([(2, 2), (0, 0), (0, 3), (3, 0), (3, 3)]):   # centre: int(round(1.5)) = 2
        numpy.testing.assert_array_equal(views[2 * k], x[:, :, oy:oy + 7, ox:ox + 7])
        numpy.testing.assert_array_equal(views[2 * k + 1], x[:, :, oy:oy + 7, ox:ox + 7][..., ::-1])
    centre, = tta_views(x, protocol=Protocol(window=7))
    numpy.testing.assert_array_equal(centre, x[:, :, 2:9, 2:9])


def test_paper_views_are_resized_to_the_input_and_their_softmax_averaged():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 9 * 9, 4)).astype("float64")
    x = batch(3, (2, 3, 10, 10))
    spec = Protocol(mirror=True, five=True, window=7, out_size=9)
    views = list(tta_views(x, protocol=spec))
    assert all(v.shape == (2, 3, 9, 9) for v in views)
    numpy.testing.assert_allclose(views[2], resize(x[:, :, 0:7, 0:7], 9), rtol=1e-12)
    expected = sum(softmax(model(v)) for v in views) / 10
    numpy.testing.assert_allclose(predict_proba(model, x, protocol=spec), expected, rtol=1e-14)


class FixedLogits:
    """A 'model' returning the logits stored for its batch (for counting top-1 and top-5 hits)."""

    def __init__(self, logits):
        self.logits = logits

    def eval(self):
        return self

    def __call__(self, x):
        return self.logits[x[:, 0, 0, 0].astype(int)]


class ListLoader:
    def __init__(self, batches):
        self.batches = batches

    def epoch(self, epoch, start=0):
        for step, (x, y) in enumerate(self.batches):
            yield step, x, y


def test_scores_count_top1_and_top5_hits():
    logits = numpy.array([[9, 8, 7, 6, 5, 4, 3], [0, 1, 2, 3, 4, 5, 6], [1, 1, 9, 1, 1, 1, 1]], dtype=float)
    x = numpy.arange(3, dtype=float).reshape(3, 1, 1, 1) * numpy.ones((3, 1, 2, 2))
    y = numpy.array([0, 1, 5])       # a top-1 hit, a miss outside the top 5, a top-5 hit that is not top-1
    result = scores(FixedLogits(logits), ListLoader([(x[:2], y[:2]), (x[2:], y[2:])]), nn.CrossEntropyLoss())
    assert (result.top1, result.top5, result.count) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 3)
    assert evaluate(FixedLogits(logits), ListLoader([(x, y)]), nn.CrossEntropyLoss())[1] == pytest.approx(1 / 3)
