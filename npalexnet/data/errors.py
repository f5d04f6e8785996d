"""The data pipeline's user-facing errors.

A :class:`DataError` is a user's mistake or an environment problem (no data,
no internet), not a bug: scripts print its message on one line and exit
without a traceback.
"""

from __future__ import annotations


class DataError(Exception):
    """Bad or missing data; the message says what was looked for and what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No dataset where it was looked for, and no download possible."""
