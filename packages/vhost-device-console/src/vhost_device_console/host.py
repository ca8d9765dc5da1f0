"""The host end of a console behind one small interface, with three real ones: this
terminal (nested), a TCP port (network) and a new pseudo-terminal (pty). Each runs on
the worker thread of the connection it is attached to: its fds sit in that worker's
epoll (no polling), and it calls the device back through `Port`."""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import signal
import socket
import termios
import tty
from typing import Protocol

from vhost_user_core import Worker

from .errors import HostError

log = logging.getLogger(__name__)

#: Guest output a host keeps for a slow (or absent) reader; beyond it the guest's tx
#: queue waits (backpressure), or, with no network client at all, the oldest bytes go.
OUTPUT_LIMIT = 64 * 1024
READ_CHUNK = 4096
ESCAPE = 0x1D  # Ctrl-]
BUSY_MESSAGE = b"vhost-device-console: another client is connected; try again later\r\n"


class Port(Protocol):
    """What a host calls on the device (on the worker thread)."""

    def host_input(self, data: bytes) -> None:
        """Bytes typed (or sent) for the guest."""

    def host_drained(self) -> None:
        """The host's output buffer has room again: take more from the guest."""

    def host_resized(self, cols: int, rows: int) -> None:
        """The terminal's size changed."""


class Host(Protocol):
    """One console's host end; lives as long as the process, across VMM connections."""

    def start(self, worker: Worker, port: Port) -> None:
        """A VMM connected: watch the host's fds on `worker`, feed `port`."""

    def stop(self) -> None:
        """The VMM left: unwatch the fds (the host stays open for the next one)."""

    def pause_input(self) -> None:
        """The guest has no rx buffer: stop reading until resume_input()."""

    def resume_input(self) -> None: ...

    def send(self, data: bytes) -> bool:
        """Queue guest output; False once the buffer is full (wait for host_drained)."""

    def size(self) -> tuple[int, int] | None:
        """(cols, rows) of a real terminal, else None."""

    def close(self) -> None: ...


class StreamHost:
    """Shared logic: a readable fd for input, a writable fd for output, both
    non-blocking, a bounded output buffer and input flow control."""

    def __init__(self) -> None:
        self.in_fd: int | None = None
        self.out_fd: int | None = None
        self._out = bytearray()
        self._worker: Worker | None = None
        self._port: Port | None = None
        self._paused = False
        self._full = False

    # -- the Host interface ------------------------------------------------------------

    def start(self, worker: Worker, port: Port) -> None:
        self._worker, self._port, self._paused = worker, port, False
        self._watch()

    def stop(self) -> None:
        self._unwatch()
        self._worker = self._port = None

    def pause_input(self) -> None:
        if not self._paused and self._worker is not None and self.in_fd is not None:
            self._worker.remove_reader(self.in_fd)
        self._paused = True

    def resume_input(self) -> None:
        if self._paused:
            self._paused = False
            self._watch()

    def send(self, data: bytes) -> bool:
        if self.out_fd is None:  # nobody to write to: keep the newest bytes
            self._out += data
            del self._out[: max(0, len(self._out) - OUTPUT_LIMIT)]
            return True
        if not self._out:
            data = data[self._write(data) :]
        if data:
            self._out += data
            if self._worker is not None:
                self._worker.add_writer(self.out_fd, self._on_writable)
        self._full = len(self._out) >= OUTPUT_LIMIT
        return not self._full

    def size(self) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        self._unwatch()

    # -- the fds -------------------------------------------------------------------------

    def _watch(self) -> None:
        worker = self._worker
        if worker is None:
            return
        if self.in_fd is not None and not self._paused:
            worker.add_reader(self.in_fd, self._on_readable)
        if self.out_fd is not None and self._out:
            worker.add_writer(self.out_fd, self._on_writable)

    def _unwatch(self) -> None:
        worker = self._worker
        if worker is None:
            return
        for fd in {self.in_fd, self.out_fd}:
            if fd is not None:
                try:
                    worker.remove_reader(fd)
                    worker.remove_writer(fd)
                except (OSError, ValueError):
                    pass  # the worker's epoll is already closed

    def _write(self, data: bytes | bytearray) -> int:
        assert self.out_fd is not None
        try:
            return os.write(self.out_fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._output_failed(exc)
            return len(data)  # nowhere to go: dropped, not retried forever

    def _on_writable(self) -> None:
        if self.out_fd is None:
            return
        del self._out[: self._write(self._out)]
        if not self._out and self._worker is not None and self.out_fd is not None:
            self._worker.remove_writer(self.out_fd)
        self._after_drain()

    def _after_drain(self) -> None:
        if self._full and len(self._out) < OUTPUT_LIMIT:
            self._full = False
            if self._port is not None:
                self._port.host_drained()

    def _on_readable(self) -> None:
        assert self.in_fd is not None
        try:
            data = os.read(self.in_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self._input_ended(exc)
            return
        if not data:
            self._input_ended(None)
            return
        data = self._filter(data)
        if data and self._port is not None:
            self._port.host_input(data)

    # -- what subclasses refine --------------------------------------------------------

    def _filter(self, data: bytes) -> bytes:
        return data

    def _input_ended(self, exc: OSError | None) -> None:
        log.warning("console input ended%s", f": {exc.strerror}" if exc else "")
        if self._worker is not None and self.in_fd is not None:
            self._worker.remove_reader(self.in_fd)
        self.in_fd = None

    def _output_failed(self, exc: OSError) -> None:
        log.warning("console output failed: %s", exc.strerror)


def _set_nonblocking(fd: int) -> int:
    """Make `fd` non-blocking; returns its previous flags."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    return flags


class TerminalHost(StreamHost):
    """nested: this process's terminal, in raw mode, so every key (Ctrl-C too) goes to
    the guest. Ctrl-] then q leaves; the terminal is restored however the process ends
    (normal exit, SIGTERM, an error), except by SIGKILL."""

    def __init__(self, in_fd: int = 0, out_fd: int = 1) -> None:
        super().__init__()
        if not os.isatty(in_fd):
            raise HostError("the nested backend needs a terminal on stdin (try --backend pty)")
        self._tty_fd = in_fd
        self._saved = termios.tcgetattr(in_fd)
        self._flags = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in {in_fd, out_fd}}
        self._restored = False
        self._escaped = False
        tty.setraw(in_fd, termios.TCSADRAIN)
        atexit.register(self.restore)
        for fd in self._flags:
            _set_nonblocking(fd)
        self.in_fd, self.out_fd = in_fd, out_fd
        # SIGWINCH reaches the main thread only: its handler wakes the worker's epoll.
        self._winch_r, self._winch_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_winch = signal.signal(signal.SIGWINCH, self._on_sigwinch)

    def _on_sigwinch(self, _signum: int, _frame: object) -> None:
        try:
            os.write(self._winch_w, b"\0")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def start(self, worker: Worker, port: Port) -> None:
        super().start(worker, port)
        worker.add_reader(self._winch_r, self._on_winch)

    def stop(self) -> None:
        if self._worker is not None:
            try:
                self._worker.remove_reader(self._winch_r)
            except (OSError, ValueError):
                pass
        super().stop()

    def _on_winch(self) -> None:
        try:
            os.read(self._winch_r, 4096)
        except BlockingIOError:
            return
        size = self.size()
        if size is not None and self._port is not None:
            self._port.host_resized(*size)

    def size(self) -> tuple[int, int] | None:
        try:
            cols, rows = os.get_terminal_size(self._tty_fd)
        except OSError:
            return None
        return cols, rows

    def _filter(self, data: bytes) -> bytes:
        """Ctrl-] q (or .) leaves; Ctrl-] Ctrl-] is one Ctrl-]; Ctrl-] and any other key
        both go to the guest."""
        if ESCAPE not in data and not self._escaped:
            return data
        out = bytearray()
        for byte in data:
            if self._escaped:
                self._escaped = False
                if byte in b"qQ.":
                    log.info("escape: leaving")
                    os.kill(os.getpid(), signal.SIGTERM)  # run_all's clean shutdown
                    break
                out += bytes([byte]) if byte == ESCAPE else bytes([ESCAPE, byte])
            elif byte == ESCAPE:
                self._escaped = True
            else:
                out.append(byte)
        return bytes(out)

    def _input_ended(self, exc: OSError | None) -> None:
        super()._input_ended(exc)
        log.warning("the terminal closed: leaving")
        os.kill(os.getpid(), signal.SIGTERM)

    def restore(self) -> None:
        """Put the terminal back as it was; idempotent (atexit calls it too)."""
        if self._restored:
            return
        self._restored = True
        for fd, flags in self._flags.items():
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            except OSError:
                pass
        try:
            termios.tcsetattr(self._tty_fd, termios.TCSADRAIN, self._saved)
        except termios.error:
            pass

    def close(self) -> None:
        super().close()
        self.restore()
        signal.signal(signal.SIGWINCH, self._previous_winch)
        os.close(self._winch_r)
        os.close(self._winch_w)


class PtyHost(StreamHost):
    """pty: a new pseudo-terminal (raw, like QEMU's pty chardev); its path is `path`.
    The daemon keeps the far end open too, so output waits in the pty for a reader
    (the guest waits once that and OUTPUT_LIMIT are full) rather than being lost."""

    def __init__(self) -> None:
        super().__init__()
        try:
            master, self._peer = os.openpty()
        except OSError as exc:
            raise HostError(f"cannot open a pseudo-terminal: {exc.strerror}") from exc
        os.set_inheritable(master, False)
        os.set_inheritable(self._peer, False)
        tty.setraw(self._peer)
        self.path = os.ttyname(self._peer)
        _set_nonblocking(master)
        self.in_fd = self.out_fd = self._master = master

    def close(self) -> None:
        super().close()
        os.close(self._master)
        os.close(self._peer)


class NetworkHost(StreamHost):
    """network: a TCP listener on 127.0.0.1:port; one client at a time (another one is
    told so and closed). Output with no client keeps the newest OUTPUT_LIMIT bytes."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(("127.0.0.1", port))
        except OSError as exc:
            self._listener.close()
            raise HostError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
        self._listener.listen(4)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._client: socket.socket | None = None

    def start(self, worker: Worker, port: Port) -> None:
        super().start(worker, port)
        worker.add_reader(self._listener.fileno(), self._accept)

    def stop(self) -> None:
        if self._worker is not None:
            try:
                self._worker.remove_reader(self._listener.fileno())
            except (OSError, ValueError):
                pass
        super().stop()

    def _accept(self) -> None:
        try:
            client, peer = self._listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        if self._client is not None:
            log.info("refused %s:%d: a client is already connected", *peer)
            try:
                client.setblocking(False)
                client.send(BUSY_MESSAGE)
            except OSError:
                pass
            client.close()
            return
        log.info("client %s:%d connected", *peer)
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = client
        self.in_fd = self.out_fd = client.fileno()
        self._watch()

    def _drop_client(self) -> None:
        self._unwatch()
        assert self._client is not None
        self._client.close()
        self._client = None
        self.in_fd = self.out_fd = None
        log.info("client disconnected")
        was_full, self._full = self._full, False
        if was_full and self._port is not None:  # with no client, output never waits
            self._port.host_drained()

    def _input_ended(self, exc: OSError | None) -> None:
        if self._client is not None:
            self._drop_client()

    def _output_failed(self, exc: OSError) -> None:
        log.info("client write failed: %s", exc.strerror)
        if self._client is not None and self._worker is not None:
            self._worker.call_soon(self._drop_if_dead)

    def _drop_if_dead(self) -> None:
        if self._client is not None:
            self._drop_client()

    def close(self) -> None:
        if self._client is not None:
            self._drop_client()
        super().close()
        self._listener.close()
