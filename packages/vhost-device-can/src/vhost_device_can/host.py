"""The host's CAN buses behind one small interface: a SocketCAN interface (python-can's
socketcan bus) and python-can's in-process virtual bus (`virtual:NAME`, the shipped
double: sockets of one daemon naming the same bus share it, as VMs on one wire).

Neither needs a reader thread: each bus has a file descriptor that is readable while
frames wait (the raw CAN socket itself; for the virtual bus an eventfd its receive
queue signals), which the connection's worker watches in its epoll.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Protocol

import can
from can.interfaces.virtual import VirtualBus

from .errors import BusError, HostError
from .protocol import Frame

log = logging.getLogger(__name__)

CAN_MTU, CANFD_MTU = 16, 72  # linux/can.h: a classic and an FD-capable interface
ARPHRD_CAN = 280
SEND_TIMEOUT = 0.05  # seconds a full transmit queue may hold the worker before BUSOFF


class Bus(Protocol):
    """One CAN bus as a socket of the daemon sees it; used from one worker at a time."""

    name: str
    #: Frames of up to 64 bytes fit (the interface's MTU is CANFD_MTU).
    fd_capable: bool

    def fileno(self) -> int:
        """Readable (level) while `receive()` has frames."""

    def send(self, frame: Frame) -> None:
        """Put `frame` on the bus, or raise BusError."""

    def receive(self) -> Frame | None:
        """The next waiting frame (never blocks), or None."""

    def close(self) -> None: ...


def _to_message(frame: Frame) -> can.Message:
    return can.Message(
        arbitration_id=frame.can_id,
        is_extended_id=frame.extended,
        is_remote_frame=frame.rtr,
        is_fd=frame.fd,
        bitrate_switch=frame.fd,
        dlc=frame.length,
        data=None if frame.rtr else frame.data,
        check=True,
    )


def _to_frame(message: can.Message) -> Frame | None:
    """A received message as a frame; None for what a guest cannot be given (error frames)."""
    if message.is_error_frame:
        return None
    if message.is_remote_frame:
        return Frame(
            message.arbitration_id,
            extended=message.is_extended_id,
            rtr=True,
            rtr_length=message.dlc,
        )
    return Frame(
        message.arbitration_id,
        bytes(message.data[: message.dlc]),
        extended=message.is_extended_id,
        fd=message.is_fd,
    )


class SocketCanBus:
    """A host CAN interface (vcan0, can1, ...) through python-can's socketcan bus; FD
    is used when the interface's MTU says it can carry FD frames, whatever its name."""

    def __init__(self, name: str, sysfs: Path = Path("/sys/class/net")) -> None:
        self.name = name
        node = sysfs / name
        try:
            kind = int((node / "type").read_text())
            mtu = int((node / "mtu").read_text())
        except (OSError, ValueError):
            raise HostError(f"no network interface {name!r}") from None
        if kind != ARPHRD_CAN:
            raise HostError(f"{name} is not a CAN interface")
        self.fd_capable = mtu >= CANFD_MTU
        try:
            self._bus = can.Bus(
                interface="socketcan",
                channel=name,
                fd=self.fd_capable,
                receive_own_messages=False,
            )
        except (can.CanError, OSError) as exc:
            raise HostError(f"cannot open {name}: {exc}") from exc

    def fileno(self) -> int:
        return self._bus.fileno()

    def send(self, frame: Frame) -> None:
        try:
            self._bus.send(_to_message(frame), timeout=SEND_TIMEOUT)
        except (can.CanError, OSError, ValueError) as exc:
            raise BusError(f"{self.name}: {exc}") from exc

    def receive(self) -> Frame | None:
        while True:
            try:
                message = self._bus.recv(timeout=0)
            except (can.CanError, OSError) as exc:
                log.warning("%s: receive failed: %s", self.name, exc)
                return None
            if message is None:
                return None
            frame = _to_frame(message)
            if frame is not None:
                return frame

    def close(self) -> None:
        self._bus.shutdown()


class _SignallingQueue(queue.Queue[can.Message]):
    """The virtual bus's receive queue, made pollable: an eventfd counts its frames."""

    def __init__(self) -> None:
        super().__init__()
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK | os.EFD_SEMAPHORE)

    def _put(self, item: can.Message) -> None:
        super()._put(item)
        os.eventfd_write(self.fd, 1)

    def take(self) -> can.Message | None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            return None
        return self.get_nowait()


_virtual_lock = threading.Lock()


class VirtualCanBus:
    """python-can's in-process virtual bus `NAME`: every socket naming it is one node."""

    fd_capable = True

    def __init__(self, name: str) -> None:
        self.name = f"virtual:{name}"
        self._bus = VirtualBus(channel=name, receive_own_messages=False)
        # python-can fills `queue` from the other nodes' send(); swap in one with an fd.
        self._queue = _SignallingQueue()
        with _virtual_lock:
            nodes = self._bus.channel
            nodes[nodes.index(self._bus.queue)] = self._queue
            self._bus.queue = self._queue

    def fileno(self) -> int:
        return self._queue.fd

    def waiting(self) -> int:
        """Frames on the bus not yet taken by the device (tests wait for 0)."""
        return self._queue.qsize()

    def send(self, frame: Frame) -> None:
        try:
            self._bus.send(_to_message(frame), timeout=SEND_TIMEOUT)
        except (can.CanError, ValueError) as exc:
            raise BusError(f"{self.name}: {exc}") from exc

    def receive(self) -> Frame | None:
        while (message := self._queue.take()) is not None:
            frame = _to_frame(message)
            if frame is not None:
                return frame
        return None

    def close(self) -> None:
        self._bus.shutdown()
        os.close(self._queue.fd)


def open_bus(spec: str) -> Bus:
    """`virtual:NAME` for the in-process bus, else a host interface's name."""
    if spec.startswith("virtual:"):
        return VirtualCanBus(spec.removeprefix("virtual:"))
    return SocketCanBus(spec)
