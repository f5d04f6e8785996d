"""Ctrl-C and SIGTERM as a request: the training loop finishes its step, saves, then stops.

A KeyboardInterrupt raised in the middle of ``optimizer.step()`` would leave
half the parameters updated; instead the first SIGINT (Ctrl-C) or SIGTERM (a
batch scheduler's pre-emption, ``kill``) only sets a flag that the loop reads
between steps. The program then exits with 128 + the signal's number (130
for SIGINT, 143 for SIGTERM), as a shell reports a process the signal
ended. A second Ctrl-C interrupts at once (KeyboardInterrupt), a second
SIGTERM exits at once with 143 (the checkpoint files are written
atomically, so even that cannot corrupt them).
"""

from __future__ import annotations

import signal
import threading

#: The signals that ask a run to save and stop, and the names the log uses for them.
SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def exit_status(signum: int) -> int:
    """The status a shell reports for a process the signal ended: 128 + its number."""
    return 128 + int(signum)


class GracefulInterrupt:
    """Context manager: ``requested`` becomes True on the first SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, log=None):
        self.requested = False
        self.signum = signal.SIGINT
        self._log = log
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.requested:
            if signum == signal.SIGTERM:
                raise SystemExit(exit_status(signum))
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        if self._log:
            again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            self._log(f"\ninterrupt ({SIGNALS[signum]}): finishing this step and saving a checkpoint "
                      f"({again} again to quit at once)")

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():   # signals only reach the main thread
            self._previous = {s: signal.signal(s, self._handler) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}
