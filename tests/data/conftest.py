"""Decoded-image caches of these tests go to their temporary folder, never to ~/.cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPALEXNET_CACHE", str(tmp_path / "npalexnet-cache"))
