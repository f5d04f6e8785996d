"""Ctrl-C and SIGTERM ask for "finish the step, save, stop"; a second one stops at once."""

from __future__ import annotations

import os
import signal

import pytest

from npalexnet.train.interrupt import GracefulInterrupt, exit_status


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_first_signal_sets_the_flag_and_the_second_stops(signum, status):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    lines = []
    with GracefulInterrupt(lines.append) as stop:
        assert not stop()
        os.kill(os.getpid(), signum)
        assert stop() and stop.signum == signum and exit_status(stop.signum) == status
        assert "finishing this step and saving a checkpoint" in lines[0]
        with pytest.raises(SystemExit if signum == signal.SIGTERM else KeyboardInterrupt) as second:
            os.kill(os.getpid(), signum)
        if signum == signal.SIGTERM:
            assert second.value.code == 143
    assert {s: signal.getsignal(s) for s in before} == before   # the handlers are given back
