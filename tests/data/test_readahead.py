"""The read-ahead ring: order, at most `depth` jobs ahead in reused buffers, errors and early stops."""

import threading
import time

import numpy
import pytest

from npalexnet.data.readahead import ReadAhead


def test_jobs_come_back_in_order_in_reused_buffers_at_most_depth_ahead():
    started, consumed = [], []

    def read(job, buffer):
        started.append((job, len(consumed)))
        buffer[:] = job
        return buffer

    buffers = [numpy.zeros(3) for _ in range(2)]
    with ReadAhead(read, range(10), buffers) as ahead:
        for job, result, buffer in ahead:
            assert (result == job).all()
            time.sleep(0.005)             # the consumer is slower: the reader waits for a free buffer
            consumed.append(job)
            ahead.release(buffer)
    assert consumed == list(range(10))
    assert all(job - done <= 2 for job, done in started)   # never more than two jobs ahead of the consumer
    assert ahead.read_seconds >= 0 and ahead.wait_seconds >= 0


def test_an_error_while_reading_is_raised_in_the_consumer():
    def read(job, buffer):
        if job == 3:
            raise OSError("disk gone")
        return job

    with ReadAhead(read, range(10), [None, None]) as ahead:
        seen = []
        with pytest.raises(OSError, match="disk gone"):
            for job, result, buffer in ahead:
                seen.append(result)
                ahead.release(buffer)
    assert seen == [0, 1, 2]


def test_stopping_early_stops_the_thread():
    before = threading.active_count()
    with ReadAhead(lambda job, buffer: job, range(1000), [0, 1]) as ahead:
        for job, _, buffer in ahead:
            if job == 2:
                break
            ahead.release(buffer)
    assert threading.active_count() == before


def test_at_least_one_buffer():
    with pytest.raises(ValueError, match="at least one buffer"):
        ReadAhead(lambda job, buffer: job, [], [])
