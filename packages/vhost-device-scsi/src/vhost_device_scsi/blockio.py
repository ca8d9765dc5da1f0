"""The I/O pool: image reads, writes, flushes and hole punches off the worker thread.

A few threads take jobs from one queue and run them (preadv, pwritev, fdatasync and
fallocate release the GIL, so they overlap with each other and with the worker); each
finished job goes on a completion list and bumps an eventfd that sits in the worker's
epoll, so completions are handled on the worker, in the order they finish.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from typing import Protocol

log = logging.getLogger(__name__)


class Job(Protocol):
    #: Set (by a task management function) before the job runs: skip the I/O.
    aborted: bool

    def run(self) -> None:
        """Do the I/O, keeping its outcome on the job; must not raise."""


class IoPool:
    def __init__(self, threads: int, name: str = "scsi-io") -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._done: deque[Job] = deque()
        self._idle = threading.Condition()
        self._outstanding = 0
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        with self._idle:
            self._outstanding += 1
        self._jobs.put(job)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not job.aborted:
                try:
                    job.run()
                except Exception:  # a bug must not take a pool thread with it
                    log.exception("I/O job failed")
            self._done.append(job)
            with self._idle:
                self._outstanding -= 1
                self._idle.notify_all()
            os.eventfd_write(self.fd, 1)

    def take(self) -> list[Job]:
        """The jobs finished since the last call (on the worker, when `fd` is readable)."""
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass
        done = []
        while self._done:
            done.append(self._done.popleft())
        return done

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished (a ring is stopping)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self) -> None:
        self.wait_idle()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        os.close(self.fd)
