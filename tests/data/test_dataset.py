"""Dataset and Split: shapes and dtypes, and every label checked once against the classes."""

from __future__ import annotations

import numpy
import pytest

from npalexnet.data import DataError, Dataset, Split


def split(labels) -> Split:
    return Split(numpy.zeros((len(labels), 3, 4, 4), numpy.uint8), numpy.asarray(labels))


def test_labels_must_index_a_class():
    Dataset("toy", split([0, 1, 2]), split([2, 0]), ["a", "b", "c"])
    with pytest.raises(DataError, match=r"toy training split \(in memory\): label 3 is outside \[0, 3\), "
                                        r"the 3 classes \(a, b, c\)"):
        Dataset("toy", split([0, 3]), split([0]), ["a", "b", "c"])
    with pytest.raises(DataError, match=r"toy test split \(/x\): label -1 is outside \[0, 5\).*\(a, b, c, d, \.\.\.\)"):
        Dataset("toy", split([0]), split([-1]), list("abcde"), source="/x")


def test_split_shapes_and_dtypes():
    with pytest.raises(ValueError, match="uint8"):
        Split(numpy.zeros((2, 3, 4, 4), numpy.float32), numpy.zeros(2, int))
    with pytest.raises(ValueError, match="labels of shape"):
        Split(numpy.zeros((2, 3, 4, 4), numpy.uint8), numpy.zeros(3, int))
    assert Split(numpy.zeros((2, 3, 4, 4), numpy.uint8), numpy.array([0, 1], numpy.int32)).labels.dtype == numpy.int64
