"""Decoded-image caches of these tests go to their temporary folder, never to ~/.cache; no mirror
from the environment reaches the download tests."""

from __future__ import annotations

import pytest

from npalexnet.data.download import ENV_URL


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPALEXNET_CACHE", str(tmp_path / "npalexnet-cache"))
    monkeypatch.delenv(ENV_URL, raising=False)
