"""Test-time views: the flip, and the paper's ten views (five crops and their mirror images)."""

import numpy
import pytest

from npalexnet import nn
from npalexnet.train.config import TrainConfig
from npalexnet.train.evaluate import predict_proba, softmax, tta_views


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
