"""Pictures: written, decodable by Pillow, of the expected size; the confusion matrix counts."""

import numpy
import pytest
from PIL import Image

from npalexnet import nn, viz
from npalexnet.models import alexnet
from tests.devicearray import FakeDeviceArray


def test_conv1_filter_grid_of_the_paper_net(tmp_path):
    model = alexnet("paper", width=0.5)          # conv1: 48 kernels 11x11x3
    path = viz.save_conv1_filters(model, tmp_path / "filters.png", cols=16, scale=4, pad=1)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (16 * (11 * 4 + 1) + 1, 3 * (11 * 4 + 1) + 1)
        pixels = numpy.asarray(im)
    # Each tile is scaled to the full range on its own (the paper's figure).
    tile = pixels[1:45, 1:45]
    assert tile.min() == 0 and tile.max() == 255


def test_filter_grid_of_weights_on_the_device():
    weight = numpy.random.default_rng(0).standard_normal((8, 3, 5, 5)).astype(numpy.float32)
    numpy.testing.assert_array_equal(viz.filter_grid(FakeDeviceArray(weight), cols=4), viz.filter_grid(weight, cols=4))


def test_filters_from_a_checkpoint_file_and_a_state_dict(tmp_path):
    model = alexnet("cifar", width=0.25, in_channels=1)
    numpy.savez(tmp_path / "ckpt.npz", **{f"model/{k}": v for k, v in model.state_dict().items()},
                meta=numpy.array("{}"))
    weight = viz.first_conv_weight(tmp_path / "ckpt.npz")
    numpy.testing.assert_array_equal(weight, model.features[0].weight.data)
    numpy.testing.assert_array_equal(viz.first_conv_weight(model.state_dict()), weight)
    path = viz.save_conv1_filters(tmp_path / "ckpt.npz", tmp_path / "grey.png", cols=8, scale=2)
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (8 * 7 + 1, 2 * 7 + 1)
    with pytest.raises(ValueError, match="no Conv2d"):
        viz.first_conv_weight(nn.Sequential(nn.Linear(2, 2)))


def test_confusion_matrix_counts():
    cm = viz.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert cm.shape == (4, 4) and cm.sum() == 6
    assert cm[0].tolist() == [1, 1, 0, 0] and cm[2].tolist() == [1, 0, 2, 0] and numpy.trace(cm) == 4


def test_confusion_matrix_and_misclassified_pngs(tmp_path):
    rng = numpy.random.default_rng(0)
    y = numpy.arange(40) % 10
    pred = numpy.where(numpy.arange(40) % 4 == 0, (y + 1) % 10, y)
    cm_path = viz.save_confusion_matrix(viz.confusion_matrix(y, pred, 10), [f"c{i}" for i in range(10)],
                                        tmp_path / "cm.png")
    images = rng.integers(0, 256, (40, 3, 32, 32), dtype=numpy.uint8)
    mis_path, shown = viz.save_misclassified(images, y, pred, [f"c{i}" for i in range(10)], tmp_path / "mis.png",
                                             max_images=8, cols=4)
    assert shown == 8
    for path, size in ((cm_path, (900, 800)), (mis_path, (int(1.9 * 4 * 100), int(2.1 * 2 * 100)))):
        with Image.open(path) as im:
            im.load()
            assert im.format == "PNG" and im.size == size
    # Normalised float images and no mistakes at all also draw.
    x = rng.standard_normal((3, 3, 32, 32)).astype(numpy.float32)
    _, shown = viz.save_misclassified(x, numpy.zeros(3, int), numpy.zeros(3, int), ["a"], tmp_path / "none.png")
    assert shown == 0 and (tmp_path / "none.png").stat().st_size > 0


def test_predict_restores_the_mode():
    model = alexnet("cifar", width=0.0625)
    x = numpy.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(numpy.float32)
    pred = viz.predict(model, x, batch_size=2)
    assert pred.shape == (5,) and model.training
    model.eval()
    numpy.testing.assert_array_equal(pred, model(x).argmax(axis=1))


def test_norm_curves_png(tmp_path):
    from npalexnet.inspect import parameter_norms, trace_step
    model = alexnet("cifar", width=0.0625)
    rng = numpy.random.default_rng(0)
    history = [parameter_norms(model)]          # before any backward: no gradients yet
    for _ in range(2):
        trace_step(model, rng.standard_normal((2, 3, 32, 32)).astype(numpy.float32), rng.integers(0, 10, 2))
        history.append(parameter_norms(model))
    path = viz.save_norm_curves(history, tmp_path / "norms.png")
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.size == (1500, 450)
