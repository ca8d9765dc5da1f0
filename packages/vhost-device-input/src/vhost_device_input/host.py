"""Host input devices behind one small interface: an evdev node through python-evdev,
or a simulated keyboard, mouse or tablet fed through a Unix socket.

A device's `fileno()` is readable when it has events; the connection's worker watches
it in its epoll (no thread per host device) and calls `read()`.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import threading
from collections import deque
from pathlib import Path
from typing import Protocol

import evdev
from evdev import ecodes

from .args import InputConfig
from .errors import ConfigError, HostDeviceError
from .protocol import (
    EV_ABS,
    EV_KEY,
    EV_LED,
    EV_MSC,
    EV_REL,
    EV_REP,
    EV_SYN,
    AbsInfo,
    Description,
    DevIds,
    Event,
)

log = logging.getLogger(__name__)


class InputDevice(Protocol):
    """One device a socket serves; its methods run on the worker that watches it."""

    description: Description

    def fileno(self) -> int:
        """Readable when `read()` has events."""

    def read(self) -> list[Event]:
        """The events available now (maybe none); HostDeviceError if the device is gone."""

    def write(self, event: Event) -> None:
        """An LED or sound event from the guest; HostDeviceError if refused."""

    def close(self) -> None: ...


class EvdevDevice:
    """The real one: /dev/input/eventN through python-evdev, optionally grabbed."""

    def __init__(self, path: str, grab: bool = False) -> None:
        self.path = path
        try:
            self._dev = evdev.InputDevice(path)
        except OSError as exc:
            if exc.errno == errno.ENOTTY:
                raise ConfigError(f"cannot use {path}: not an evdev input device") from None
            raise ConfigError(f"cannot open {path}: {exc.strerror or exc}") from None
        try:
            if grab:
                self._dev.grab()
            self.description = self._describe()
        except OSError as exc:
            self._dev.close()
            why = "grabbed by another program" if exc.errno == errno.EBUSY else exc.strerror
            raise ConfigError(f"cannot use {path}: {why}") from None
        os.set_blocking(self._dev.fd, False)

    def _describe(self) -> Description:
        dev = self._dev
        caps = dev.capabilities(absinfo=False)
        codes = {t: frozenset(c) for t, c in caps.items() if t != EV_SYN}
        absinfo = {}
        for axis in codes.get(EV_ABS, ()):
            a = dev.absinfo(axis)
            absinfo[axis] = AbsInfo(a.min, a.max, a.fuzz, a.flat, a.resolution)
        info = dev.info
        return Description(
            name=dev.name,
            serial=dev.uniq or "",
            ids=DevIds(info.bustype, info.vendor, info.product, info.version),
            props=frozenset(dev.input_props()),
            codes=codes,
            absinfo=absinfo,
        )

    def fileno(self) -> int:
        return self._dev.fd

    def read(self) -> list[Event]:
        try:
            return [(e.type, e.code, e.value) for e in self._dev.read()]
        except BlockingIOError:
            return []
        except OSError as exc:
            raise HostDeviceError(f"{self.path}: {exc.strerror}") from None

    def write(self, event: Event) -> None:
        try:
            self._dev.write(*event)
        except OSError as exc:
            raise HostDeviceError(f"{self.path}: write refused: {exc.strerror}") from None

    def close(self) -> None:
        self._dev.close()


def _range(first: int, last: int) -> frozenset[int]:
    return frozenset(range(first, last + 1))


SIM_DESCRIPTIONS = {
    "keyboard": Description(
        name="vhost-device-input sim keyboard",
        serial="sim-keyboard",
        ids=DevIds(0x06, 0x0627, 0x0001, 1),  # BUS_VIRTUAL, QEMU's vendor id
        codes={
            EV_KEY: _range(ecodes.KEY_ESC, ecodes.KEY_MICMUTE),
            EV_MSC: frozenset({ecodes.MSC_SCAN}),
            EV_LED: frozenset({ecodes.LED_NUML, ecodes.LED_CAPSL, ecodes.LED_SCROLLL}),
            EV_REP: frozenset({ecodes.REP_DELAY, ecodes.REP_PERIOD}),
        },
    ),
    "mouse": Description(
        name="vhost-device-input sim mouse",
        serial="sim-mouse",
        ids=DevIds(0x06, 0x0627, 0x0002, 1),
        props=frozenset({ecodes.INPUT_PROP_POINTER}),
        codes={
            EV_KEY: frozenset({ecodes.BTN_LEFT, ecodes.BTN_RIGHT, ecodes.BTN_MIDDLE}),
            EV_REL: frozenset({ecodes.REL_X, ecodes.REL_Y, ecodes.REL_WHEEL}),
        },
    ),
    "tablet": Description(
        name="vhost-device-input sim tablet",
        serial="sim-tablet",
        ids=DevIds(0x06, 0x0627, 0x0003, 1),
        props=frozenset({ecodes.INPUT_PROP_DIRECT}),
        codes={
            EV_KEY: frozenset({ecodes.BTN_LEFT, ecodes.BTN_RIGHT, ecodes.BTN_TOUCH}),
            EV_ABS: frozenset({ecodes.ABS_X, ecodes.ABS_Y}),
        },
        absinfo={ecodes.ABS_X: AbsInfo(0, 32767, 0, 0, 100), ecodes.ABS_Y: AbsInfo(0, 32767)},
    ),
}

#: Events a sim device keeps while no guest reads them; older ones are dropped.
SIM_BACKLOG = 4096
#: The longest line the events socket takes; a longer one is answered and skipped.
MAX_LINE = 4096
_TYPE_PREFIX = {
    EV_SYN: "SYN_",
    EV_KEY: ("KEY_", "BTN_"),
    EV_REL: "REL_",
    EV_ABS: "ABS_",
    EV_MSC: "MSC_",
    EV_LED: "LED_",
    ecodes.EV_SND: "SND_",
    EV_REP: "REP_",
    ecodes.EV_SW: "SW_",
}


def parse_event_line(line: str) -> Event:
    """`<TYPE> <CODE> <VALUE>`, each a number or (TYPE, CODE) an evdev name; ValueError
    says what is wrong."""
    parts = line.split()
    if len(parts) != 3:
        raise ValueError(f"{line!r} is not <TYPE> <CODE> <VALUE>")
    type_text, code_text, value_text = parts
    etype = _number(type_text, lambda n: n.startswith("EV_"))
    prefix = _TYPE_PREFIX.get(etype, ())
    code = _number(code_text, lambda n: n.startswith(prefix))
    value = int(value_text, 0)
    if not 0 <= etype <= 0xFFFF or not 0 <= code <= 0xFFFF or not -(2**31) <= value < 2**31:
        raise ValueError(f"{line!r} is out of range")
    return etype, code, value


def _number(text: str, fits: object) -> int:
    try:
        return int(text, 0)
    except ValueError:
        pass
    value = ecodes.ecodes.get(text)
    if value is None or not callable(fits) or not fits(text):
        raise ValueError(f"{text!r} is not a known name here")
    return int(value)


def format_event(event: Event) -> str:
    """An event as a line, with evdev's names where it has them (LED_CAPSL)."""
    etype, code, value = event
    tname = ecodes.EV.get(etype, str(etype))
    names = {ecodes.EV_LED: ecodes.LED, ecodes.EV_SND: ecodes.SND}.get(etype, {})
    cname = names.get(code, str(code))
    if isinstance(tname, list):
        tname = tname[0]
    if isinstance(cname, list):
        cname = cname[0]
    return f"{tname} {cname} {value}\n"


#: Bytes of answers and LED lines a sim events client may have waiting: one that reads
#: no further behind is dropped (logged), so a stalled client costs neither the device
#: nor the other clients anything.
SIM_CLIENT_BUFFER = 64 * 1024


class _SimClient:
    """One events-socket client: its non-blocking socket, the unsent lines bound for
    it, and its half-read input line."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.out = bytearray()
        self.partial = b""
        self.overlong = False  # in the middle of a refused line
        self.dropped = False  # fell too far behind: closed by the server thread


class SimDevice:
    """The double: a keyboard, mouse or tablet whose events arrive as lines on the Unix
    socket `<events_path>`; the guest's LED and sound writes go back to every client of
    that socket as lines too. The socket has its own small thread, which alone touches
    the clients' sockets; the device fd the worker watches is an eventfd."""

    def __init__(self, kind: str, events_path: str) -> None:
        self.kind = kind
        self.description = SIM_DESCRIPTIONS[kind]
        self.events_path = Path(events_path)
        self.written: list[Event] = []  # what the guest sent back, for tests
        self._queue: deque[Event] = deque(maxlen=SIM_BACKLOG)
        self._lock = threading.Lock()
        self._clients: list[_SimClient] = []
        self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # Output queued by the worker's thread wakes the server thread to send it.
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        try:
            if self.events_path.is_socket():
                self.events_path.unlink()
            self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self._server.bind(str(self.events_path))
            self._server.listen(4)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {events_path}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._serve, name=f"sim-{kind}", daemon=True)
        self._thread.start()

    def inject(self, events: list[Event]) -> None:
        with self._lock:
            self._queue.extend(events)
        os.eventfd_write(self._eventfd, 1)

    def fileno(self) -> int:
        return self._eventfd

    def read(self) -> list[Event]:
        try:
            os.eventfd_read(self._eventfd)
        except BlockingIOError:
            pass
        with self._lock:
            events = list(self._queue)
            self._queue.clear()
        return events

    def write(self, event: Event) -> None:
        """Queue the guest's event for every client; never blocks the worker."""
        line = format_event(event).encode()
        with self._lock:
            self.written.append(event)
            for client in self._clients:
                self._queue_out(client, line)
        os.eventfd_write(self._wake, 1)

    def _queue_out(self, client: _SimClient, data: bytes) -> None:
        """Add `data` to the client's output (the lock held); past the cap, drop it."""
        if client.dropped:
            return
        if len(client.out) + len(data) > SIM_CLIENT_BUFFER:
            client.dropped = True
            client.out.clear()
            log.warning(
                "%s: a client over %d bytes behind is dropped", self.events_path, SIM_CLIENT_BUFFER
            )
            return
        client.out += data

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._server, selectors.EVENT_READ)
        sel.register(self._stop_r, selectors.EVENT_READ)
        sel.register(self._wake, selectors.EVENT_READ)
        while True:
            for key, mask in sel.select():
                if key.fileobj == self._stop_r:
                    sel.close()
                    return
                if key.fileobj == self._wake:
                    try:
                        os.eventfd_read(self._wake)
                    except BlockingIOError:
                        pass
                elif key.fileobj is self._server:
                    sock, _addr = self._server.accept()
                    client = _SimClient(sock)
                    with self._lock:
                        self._clients.append(client)
                    sel.register(sock, selectors.EVENT_READ, client)
                else:
                    client = key.data
                    if mask & selectors.EVENT_READ and not self._receive(client):
                        with self._lock:
                            client.dropped = True
            with self._lock:
                clients = list(self._clients)
            for client in clients:
                self._flush(sel, client)

    def _receive(self, client: _SimClient) -> bool:
        """Take what the client sent; False once it hung up."""
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            return False
        buffered = client.partial + data
        if client.overlong:  # the rest of a line already refused: skipped
            end = buffered.find(b"\n")
            if end < 0:
                client.partial = b""  # kept nowhere, so never refused again
                return True
            client.overlong = False
            buffered = buffered[end + 1 :]
        *lines, client.partial = buffered.split(b"\n")
        if len(client.partial) > MAX_LINE:  # however its bytes arrive
            lines.append(client.partial)
            client.partial = b""
            client.overlong = True
        self._take(client, lines)
        return True

    def _flush(self, sel: selectors.BaseSelector, client: _SimClient) -> None:
        """Send what the socket takes now; wait for writability for the rest. A client
        that hung up, failed or fell too far behind is closed here."""
        with self._lock:
            if not client.dropped and client.out:
                try:
                    del client.out[: client.sock.send(client.out)]
                except BlockingIOError:
                    pass
                except OSError:
                    client.dropped = True
            if client.dropped:
                self._clients.remove(client)
            pending = bool(client.out)
        if client.dropped:
            sel.unregister(client.sock)
            client.sock.close()
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
        if sel.get_key(client.sock).events != events:
            sel.modify(client.sock, events, client)

    def _take(self, client: _SimClient, lines: list[bytes]) -> None:
        events: list[Event] = []
        for raw in lines:
            if len(raw) > MAX_LINE:
                self._refuse(client, f"a line of over {MAX_LINE} bytes is skipped")
                continue
            text = raw.decode(errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            try:
                events.append(parse_event_line(text))
            except ValueError as exc:
                self._refuse(client, str(exc))
        if events:
            self.inject(events)

    def _refuse(self, client: _SimClient, why: str) -> None:
        log.warning("%s: %s", self.events_path, why)
        with self._lock:
            self._queue_out(client, f"error: {why}\n".encode())
            if client.out and not client.dropped:
                # Sent before the line's batch is injected, as far as the client's
                # socket buffer takes them (a few hundred answers); the rest follows
                # when it has room, after the batch: the worker never waits on a client.
                try:
                    del client.out[: client.sock.send(client.out)]
                except OSError:
                    pass

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        self._server.close()
        with self._lock:
            for client in self._clients:
                client.sock.close()
            self._clients.clear()
        for fd in (self._eventfd, self._wake, self._stop_r, self._stop_w):
            os.close(fd)
        try:
            self.events_path.unlink()
        except OSError:
            pass


def open_devices(config: InputConfig) -> list[InputDevice]:
    """Every device of the list, or ConfigError (and none left open)."""
    devices: list[InputDevice] = []
    try:
        for item, sock in zip(config.devices, config.sockets, strict=True):
            if item.startswith("sim:"):
                devices.append(SimDevice(item[4:], f"{sock}.events"))
            else:
                devices.append(EvdevDevice(item, config.grab))
    except BaseException:
        for device in devices:
            device.close()
        raise
    return devices
