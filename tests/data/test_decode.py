"""The one decode rule: the paper's and torchvision's resize-then-centre-crop, squash, draft() for large JPEGs."""

import numpy
import pytest
from PIL import Image

from npalexnet.data import DataError
from npalexnet.data.decode import centre_offset, decode_image, resized_size


def picture(width, height, seed=0):
    """A smooth RGB image (gradients plus a few blocks), so resampling differences stay small."""
    rng = numpy.random.default_rng(seed)
    y, x = numpy.mgrid[0:height, 0:width]
    base = numpy.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    for _ in range(4):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        base[y0:y0 + height // 4, x0:x0 + width // 4] = rng.integers(0, 256, 3)
    return Image.fromarray(base.astype(numpy.uint8))


@pytest.mark.parametrize("size", [(80, 50), (50, 80), (64, 64), (97, 33)])
def test_crop_rule_equals_torchvision_resize_then_centre_crop(tmp_path, size):
    transforms = pytest.importorskip("torchvision.transforms")
    path = tmp_path / "a.png"
    picture(*size).save(path)
    ours = decode_image(str(path), 32)
    reference = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32)])(Image.open(path).convert("RGB"))
    numpy.testing.assert_array_equal(ours, numpy.asarray(reference).transpose(2, 0, 1))


def test_squash_rule_resizes_both_sides_and_grey_has_one_channel(tmp_path):
    path = tmp_path / "a.png"
    picture(80, 40).save(path)
    squashed = decode_image(str(path), 20, rule="squash")
    expected = numpy.asarray(Image.open(path).convert("RGB").resize((20, 20), Image.BILINEAR)).transpose(2, 0, 1)
    numpy.testing.assert_array_equal(squashed, expected)
    grey = decode_image(str(path), 20, channels=1)
    assert grey.shape == (1, 20, 20) and grey.dtype == numpy.uint8


def test_geometry_of_the_crop_rule():
    assert resized_size(640, 480, 256) == (341, 256)        # int(256 * 640 / 480), torchvision's rounding
    assert resized_size(300, 500, 256) == (256, 426)
    assert resized_size(300, 500, 256, "squash") == (256, 256)
    assert centre_offset(341, 256) == 42 and centre_offset(257, 256) == 0   # int(round(0.5)) == 0
    with pytest.raises(ValueError, match="unknown resize rule"):
        resized_size(10, 10, 5, "stretch")


def test_large_jpegs_are_drafted_to_at_least_the_target_size(tmp_path, monkeypatch):
    """A JPEG 4x larger than the target is decoded at 1/2 or 1/4 scale, never below the target,
    and the result stays close to the full decode."""
    from PIL import JpegImagePlugin

    path = tmp_path / "big.jpg"
    picture(1024, 768).save(path, quality=95)
    drafted, original = [], JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        result = original(self, mode, size)
        drafted.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    ours = decode_image(str(path), 64)
    (requested, decoded), = drafted
    assert requested == (85, 64)                                     # the size before the centre crop
    assert decoded[0] >= 85 and decoded[1] >= 64 and decoded[0] <= 1024 // 4   # scaled down, not below
    full = Image.open(path).convert("RGB").resize((85, 64), Image.BILINEAR).crop((10, 0, 74, 64))
    difference = numpy.abs(ours.astype(int) - numpy.asarray(full).transpose(2, 0, 1).astype(int))
    assert ours.shape == (3, 64, 64) and difference.mean() < 3


def test_small_jpegs_are_not_drafted(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = tmp_path / "small.jpg"
    picture(100, 80).save(path, quality=95)
    original, sizes = JpegImagePlugin.JpegImageFile.draft, []

    def recording_draft(self, mode, size):
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    decode_image(str(path), 64)
    assert sizes == [(100, 80)]                                       # less than 2x the target: full size


@pytest.mark.parametrize("content", [b"", b"not an image", b"\xff\xd8\xff\xe0 truncated jpeg"])
def test_unreadable_files_raise_a_data_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken.jpg"):
        decode_image(str(path), 16)


def test_a_truncated_jpeg_is_unreadable(tmp_path):
    path = tmp_path / "cut.jpg"
    picture(200, 100).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match="cut.jpg"):
        decode_image(str(path), 16)
