"""Decoded-image caches of these tests go to their temporary folder, never to ~/.cache; a tiny CIFAR-10 copy."""

from __future__ import annotations

import pytest

from tests.fakedata import write_cifar_batches


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPALEXNET_CACHE", str(tmp_path / "npalexnet-cache"))


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """``cifar-10-batches-py`` with 5 x 12 training and 10 test images (one per module that asks)."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_batches(root, per_batch=12, test=10)
    return root
