# cython: language_level=3, boundscheck=False, wraparound=False
"""A worker's epoll loop in C (`Worker` runs it on its thread).

What the Python loop did per wake-up, without its objects: epoll_wait with the GIL
released into a C array (no list of tuples), the wake-up eventfd read in C, a kick
(`fastpath.Kick`, edge-triggered, never read) fired through C (a device's fast path
called without Python), timers and queued calls looked at only when there are some.
Callbacks still run with the session lock held; one removed meanwhile is skipped.
"""

import logging

from libc.errno cimport EINTR, errno
from libc.math cimport ceil
from libc.stdint cimport uint32_t, uint64_t
from posix.unistd cimport read

from .fastpath cimport Kick

log = logging.getLogger("vhost_user_core.worker")


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)

    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP

cdef enum:
    MAX_EVENTS = 64


cdef void dispatch(
    object worker, object acquire, object release, object callback, int fd, dict registry
):
    if worker._stopping:
        return
    acquire()
    try:
        # The control thread, or the other callback of this fd, may have removed it
        # while we waited for the lock.
        if registry.get(fd) is not callback:
            return
        if type(callback) is Kick:
            (<Kick>callback).fire()
        else:
            callback()
    except Exception:
        # A device bug or a hostile guest must not kill the worker thread.
        log.exception("%s: handler failed", worker.name)
    finally:
        release()


def run(worker):
    """The body of `worker`'s thread, until `worker._stopping`."""
    cdef int epfd = worker._epoll.fileno()
    cdef int wake = worker._wake
    cdef epoll_event events[MAX_EVENTS]
    cdef int n, i, fd, timeout
    cdef uint32_t mask
    cdef uint64_t value
    cdef double seconds
    cdef dict readers = worker._readers
    cdef dict writers = worker._writers
    cdef dict hangups = worker._hangups
    cdef object timers = worker._timers
    cdef object soon = worker._soon
    cdef object acquire = worker._lock.acquire
    cdef object release = worker._lock.release
    while not worker._stopping:
        timeout = -1
        if soon:
            timeout = 0
        elif timers:
            seconds = worker._timeout()
            if seconds >= 0:
                timeout = <int>ceil(seconds * 1000.0)
        with nogil:
            n = epoll_wait(epfd, events, MAX_EVENTS, timeout)
        if n < 0:
            if errno == EINTR:
                continue
            raise OSError(errno, "epoll_wait")
        for i in range(n):
            fd = events[i].data.fd
            mask = events[i].events
            if fd == wake:
                read(wake, &value, 8)
                continue
            # An error or hang-up wakes both sides: each finds out by trying.
            if mask & ~(<uint32_t>EPOLLOUT):
                callback = readers.get(fd)
                if callback is not None:
                    dispatch(worker, acquire, release, callback, fd, readers)
            if mask & ~(<uint32_t>EPOLLIN):
                callback = writers.get(fd)
                if callback is not None:
                    dispatch(worker, acquire, release, callback, fd, writers)
            # A hang-up watch (`add_hangup`) hears of it even on an fd nobody reads.
            if mask & (<uint32_t>(EPOLLHUP | EPOLLERR)):
                callback = hangups.get(fd)
                if callback is not None:
                    dispatch(worker, acquire, release, callback, fd, hangups)
        if soon or timers:
            worker._run_due()
