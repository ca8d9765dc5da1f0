"""Worker.call_now: another thread's work for a worker runs at once when the worker is
idle, after its current callback when it is busy, and never once it has stopped;
Worker.at_exit, run on the worker's own thread as it stops; and the watches: a
hang-up heard on an fd that is also read, every watch gone at once with unwatch."""

from __future__ import annotations

import os
import socket
import threading

from vhost_user_core import Worker


def started_worker() -> tuple[Worker, threading.RLock]:
    lock = threading.RLock()
    worker = Worker("call-now-test", lock)
    worker.start()
    return worker, lock


def test_call_now_runs_on_the_calling_thread_when_the_worker_is_idle() -> None:
    worker, _ = started_worker()
    try:
        ran_on: list[threading.Thread] = []
        worker.call_now(lambda: ran_on.append(threading.current_thread()))
        assert ran_on == [threading.current_thread()]
    finally:
        worker.stop()


def test_call_now_defers_to_the_worker_while_its_lock_is_held() -> None:
    worker, lock = started_worker()
    try:
        ran_on: list[threading.Thread] = []
        done = threading.Event()

        def callback() -> None:
            ran_on.append(threading.current_thread())
            done.set()

        holder_has_lock, release = threading.Event(), threading.Event()

        def hold() -> None:
            with lock:
                holder_has_lock.set()
                release.wait(5)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holder_has_lock.wait(5)
        worker.call_now(callback)  # never blocks on the held lock
        assert not done.is_set()
        release.set()
        holder.join(5)
        assert done.wait(5)
        assert ran_on and ran_on[0] not in (threading.current_thread(), holder)
    finally:
        worker.stop()


def test_call_now_does_nothing_once_stopped() -> None:
    worker, _ = started_worker()
    worker.stop()
    ran: list[int] = []
    worker.call_now(lambda: ran.append(1))
    assert ran == []


def test_watches_change_after_stop_without_error() -> None:
    """A backend's close runs after its workers stopped and still unwatches its fds,
    some with a hang-up watch left (which makes the update a modify, not a removal)."""
    worker, _ = started_worker()
    a, b = os.pipe()
    try:
        worker.add_reader(a, lambda: None)
        worker.add_hangup(a, lambda: None)
        worker.stop()
        worker.remove_reader(a)
        worker.remove_hangup(a)
    finally:
        os.close(a)
        os.close(b)


def test_a_hangup_is_heard_on_an_fd_that_is_also_read_and_unwatch_ends_both() -> None:
    """add_hangup on an fd in the epoll set already changes no mask (a hang-up is
    reported whatever is asked for), yet its callback runs when the peer closes."""
    worker, _ = started_worker()
    first, second = socket.socketpair()
    heard = threading.Event()
    reads: list[bytes] = []
    try:

        def readable() -> None:
            data = first.recv(100)
            reads.append(data)
            if not data:
                worker.remove_reader(first.fileno())  # EOF stays readable

        def hung_up() -> None:
            worker.unwatch(first.fileno())
            heard.set()

        worker.add_reader(first.fileno(), readable)
        worker.add_hangup(first.fileno(), hung_up)
        second.sendall(b"x")
        second.close()  # EOF both ways for a socketpair: POLLHUP
        assert heard.wait(5)
        assert reads and reads[0] == b"x"
        count = len(reads)
        first.close()  # nothing is watched: no callback for the closed fd
        threading.Event().wait(0.2)
        assert len(reads) == count
    finally:
        worker.stop()
        first.close()


def test_exit_handlers_run_on_the_workers_thread_before_stop_returns() -> None:
    """`at_exit`: state bound to the worker's thread (a GL context) is torn down there;
    a failing handler is logged and the next still runs."""
    worker, _ = started_worker()
    ran: list[str] = []

    def fails() -> None:
        raise RuntimeError("boom")

    worker.at_exit(fails)
    worker.at_exit(lambda: ran.append(threading.current_thread().name))
    worker.stop()
    assert ran == ["call-now-test"]
