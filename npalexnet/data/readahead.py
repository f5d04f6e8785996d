"""Read batches ahead of their use in a background thread, into a ring of reused host buffers.

Why a thread: reading a batch is ``pread`` calls (:meth:`~.store.ImageStore.read`),
which release the GIL, so a thread reads while the main thread's step runs its
NumPy/BLAS kernels (which release it too) or waits for the GPU; a process
would have to hand every batch over through shared memory for nothing more.

Why a ring of ``depth`` buffers (2: double buffering): the memory stays
``depth`` batches whatever the size of the data, and nothing is allocated per
step. The consumer takes a filled buffer, copies what it needs out of it (to
the device, or the augmented batch), and hands it back with :meth:`release`;
meanwhile the thread fills the other one with the next batch.

The time the consumer spends blocked waiting for a buffer, and the time the
thread spends reading, are counted (:attr:`ReadAhead.wait_seconds`,
:attr:`ReadAhead.read_seconds`), so a run can say whether it waited for data.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable

_END, _STOP = object(), object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class ReadAhead:
    """Run ``read(job, buffer)`` for each of ``jobs`` in a thread, ``depth`` jobs ahead at most.

    Args:
        read: fills ``buffer`` for ``job`` and returns what the consumer gets (e.g. a view of it).
        jobs: the work, in order (e.g. each step's image indices).
        buffers: the ring (``depth`` = ``len(buffers)``), reused round and round.

    Iterating yields ``(job, result, buffer)``; call :meth:`release` with the
    buffer when done with it (before the next job can use it). An exception in
    ``read`` is raised in the consumer. Use as a context manager, or call
    :meth:`close`, so the thread stops when the consumer stops early.
    """

    def __init__(self, read: Callable, jobs: Iterable, buffers: list):
        if not buffers:
            raise ValueError("ReadAhead needs at least one buffer")
        self._read, self._jobs = read, iter(jobs)
        self._free: queue.Queue = queue.Queue()
        self._filled: queue.Queue = queue.Queue()
        for buffer in buffers:
            self._free.put(buffer)
        self._stop = threading.Event()
        self.wait_seconds = 0.0      # consumer blocked on an empty ring
        self.read_seconds = 0.0      # thread busy reading
        self._thread = threading.Thread(target=self._run, name="npalexnet-readahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for job in self._jobs:
                buffer = self._free.get()
                if buffer is _STOP or self._stop.is_set():
                    return
                start = time.perf_counter()
                result = self._read(job, buffer)
                self.read_seconds += time.perf_counter() - start
                self._filled.put((job, result, buffer))
        except BaseException as exc:   # noqa: BLE001 (handed to the consumer, raised there)
            self._filled.put(_Failure(exc))
            return
        self._filled.put(_END)

    def __iter__(self):
        while True:
            start = time.perf_counter()
            item = self._filled.get()
            self.wait_seconds += time.perf_counter() - start
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def release(self, buffer) -> None:
        """Give ``buffer`` back to the ring for the next job."""
        self._free.put(buffer)

    def close(self) -> None:
        """Stop the thread (it finishes the read in progress) and wait for it."""
        self._stop.set()
        self._free.put(_STOP)              # wakes the thread if it waits for a buffer
        self._thread.join()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
