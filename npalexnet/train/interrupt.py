"""Ctrl-C as a request: the training loop finishes its step, saves, then stops.

A KeyboardInterrupt raised in the middle of ``optimizer.step()`` would leave
half the parameters updated; instead the first SIGINT only sets a flag that
the loop reads between steps. A second Ctrl-C interrupts at once (the
checkpoint files are written atomically, so even that cannot corrupt them).
"""

from __future__ import annotations

import signal
import threading


class GracefulInterrupt:
    """Context manager: ``requested`` becomes True on the first SIGINT."""

    def __init__(self, log=None):
        self.requested = False
        self._log = log
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._log:
            self._log("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)")

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():   # signals only reach the main thread
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
