"""A worker's epoll loop in C: epoll_wait without the GIL into a C array, the wake-up
eventfd read in C, kicks (edge-triggered, never read) fired in C, callbacks under the
session lock."""

from .worker import Worker

def run(worker: Worker) -> None:
    """The body of `worker`'s thread, until it is stopping."""
