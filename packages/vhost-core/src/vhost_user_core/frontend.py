"""The VMM side of vhost-user, in Python: drives any backend for tests and benchmarks.

`Frontend` speaks the protocol (one typed method per request, plus `request()` for raw
and hostile messages); `GuestRam` is memfd-backed guest memory with a bump allocator;
`FrontendQueue` plays the guest driver on one virtqueue (rings in `GuestRam`, kick and
call eventfds). `Frontend.start_device()` runs the same set-up sequence QEMU does.
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .connection import Connection, Message
from .driver import DriverQueue
from .errors import Disconnected, ProtocolError, VhostUserError
from .memory import GuestMemory
from .protocol import (
    STANDARD_FEATURES,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VIRTIO_RING_F_EVENT_IDX,
    VRING_NOFD_MASK,
    BackendRequest,
    ConfigSpace,
    HeaderFlag,
    Inflight,
    MemoryRegionDesc,
    MemTable,
    ProtocolFeature,
    Request,
    ShmemConfig,
    ShmemMap,
    SingleRegion,
    VringAddr,
    VringState,
    request_name,
)

#: Where GuestRam pretends the VMM mapped guest memory (only translation uses it).
VMM_BASE = 0x7F00_0000_0000


class GuestRam:
    """Guest memory for a frontend: one memfd region at GPA 0 and a bump allocator."""

    def __init__(self, size: int, *, gpa: int = 0, name: str = "vhost-frontend") -> None:
        self.size = size
        self.gpa = gpa
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.memory = GuestMemory()
        self.memory.add_region(gpa, size, VMM_BASE + gpa, 0, self.fd)
        self._next = gpa

    def alloc(self, size: int, align: int = 64) -> int:
        """Reserve `size` bytes; returns their GPA."""
        start = (self._next + align - 1) & ~(align - 1)
        if start + size > self.gpa + self.size:
            raise VhostUserError(f"guest RAM exhausted allocating {size} bytes")
        self._next = start + size
        return start

    def region(self) -> MemoryRegionDesc:
        return MemoryRegionDesc(self.gpa, self.size, VMM_BASE + self.gpa, 0)

    def close(self) -> None:
        self.memory.close()
        os.close(self.fd)


class FrontendQueue:
    """One virtqueue as the guest driver sees it, with its kick and call eventfds."""

    def __init__(self, ram: GuestRam, index: int, size: int, *, event_idx: bool) -> None:
        self.index = index
        self.size = size
        desc_len, avail_len, used_len = DriverQueue.layout(size)
        self.desc = ram.alloc(desc_len, 16)
        self.avail = ram.alloc(avail_len, 2)
        self.used = ram.alloc(used_len, 4)
        self.driver = DriverQueue(ram.memory, size, self.desc, self.avail, self.used, event_idx)
        self.kick_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.call_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self.call_fd, select.POLLIN)

    def kick(self) -> None:
        os.eventfd_write(self.kick_fd, 1)

    def publish(self) -> None:
        """Make posted chains visible and kick if the device asked for kicks."""
        if self.driver.publish():
            self.kick()

    def wait_call(self, timeout: float | None = 5.0) -> bool:
        """Wait for an interrupt; True if one came (and consume it)."""
        ms = None if timeout is None else int(timeout * 1000)
        if not self._poll.poll(ms):
            return False
        try:
            os.eventfd_read(self.call_fd)
        except BlockingIOError:
            return False
        return True

    def wait_used(self, count: int, timeout: float = 5.0) -> list[tuple[int, int]]:
        """Collect at least `count` used entries, waiting for interrupts as needed."""
        deadline = time.monotonic() + timeout
        used: list[tuple[int, int]] = []
        while True:
            used += self.driver.get_used()
            if len(used) < count:
                # Like a guest driver: ask for the next interrupt, then look again, so an
                # entry that landed meanwhile is not waited for (EVENT_IDX's used_event).
                self.driver.arm_interrupt()
                used += self.driver.get_used()
            if len(used) >= count:
                return used
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"queue {self.index}: {len(used)} of {count} buffers used")
            self.wait_call(remaining)

    def close(self) -> None:
        os.close(self.kick_fd)
        os.close(self.call_fd)


@dataclass
class VmmMapping:
    """One SHMEM_MAP the VMM honoured: the fd's pages, mapped here as the guest sees them."""

    shmid: int
    shm_offset: int
    length: int
    writable: bool
    pages: mmap.mmap


class VmmSharedMemory:
    """The VMM's side of vhost-user shared memory: the regions GET_SHMEM_CONFIG sized
    and a thread serving the backend's SHMEM_MAP / SHMEM_UNMAP on the backend request
    channel. A map is checked as a VMM must (a known shmid, whole pages inside the
    region, no overlap, exactly one fd), then the fd is mmapped here, so a test reads
    and writes what the guest would see at that offset of the region; anything else is
    refused with a non-zero REPLY_ACK. `requests` logs (request, payload, accepted)."""

    def __init__(self, sizes: Sequence[int], sock: socket.socket) -> None:
        self.sizes = tuple(sizes)
        self.conn = Connection(sock)
        self.maps: dict[tuple[int, int], VmmMapping] = {}
        self.requests: list[tuple[int, ShmemMap | None, bool]] = []
        self.cond = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="vmm-shmem", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (Disconnected, ProtocolError, OSError):
                return
            payload: ShmemMap | None = None
            try:
                payload = ShmemMap.decode(msg.payload)
                ok = self._handle(msg.header.request, payload, msg)
            except ProtocolError:
                ok = False
            finally:
                msg.close_fds()
            with self.cond:
                self.requests.append((msg.header.request, payload, ok))
                self.cond.notify_all()
            if msg.header.need_reply:
                try:
                    self.conn.reply(msg.header.request, U64(0 if ok else 1).encode())
                except (Disconnected, OSError):
                    return

    def _handle(self, request: int, p: ShmemMap, msg: Message) -> bool:
        if not 0 <= p.shmid < len(self.sizes) or not self.sizes[p.shmid]:
            return False
        page = mmap.PAGESIZE
        if p.length == 0 or (p.shm_offset | p.length | p.fd_offset) % page:
            return False
        if p.shm_offset + p.length > self.sizes[p.shmid]:
            return False
        with self.cond:
            if request == BackendRequest.SHMEM_MAP:
                if len(msg.fds) != 1 or self._overlaps(p):
                    return False
                prot = mmap.PROT_READ | (mmap.PROT_WRITE if p.writable else 0)
                try:
                    # A file shorter than the range (a keymap) is mapped as far as it
                    # goes, which is all a guest could read (past it, it would fault);
                    # Python's mmap refuses a length past the end of a file.
                    size = os.fstat(msg.fds[0]).st_size
                    length = min(p.length, size - p.fd_offset) if size else p.length
                    pages = mmap.mmap(msg.fds[0], length, mmap.MAP_SHARED, prot, offset=p.fd_offset)
                except (OSError, ValueError):
                    return False
                self.maps[(p.shmid, p.shm_offset)] = VmmMapping(
                    p.shmid, p.shm_offset, p.length, p.writable, pages
                )
                return True
            if request == BackendRequest.SHMEM_UNMAP:
                mapping = self.maps.get((p.shmid, p.shm_offset))
                if msg.fds or mapping is None or mapping.length != p.length:
                    return False
                del self.maps[(p.shmid, p.shm_offset)]
                _release(mapping.pages)
                return True
        return False

    def _overlaps(self, p: ShmemMap) -> bool:
        end = p.shm_offset + p.length
        return any(
            m.shmid == p.shmid and m.shm_offset < end and p.shm_offset < m.shm_offset + m.length
            for m in self.maps.values()
        )

    def wait_requests(
        self, count: int, timeout: float = 5.0
    ) -> list[tuple[int, ShmemMap | None, bool]]:
        """Wait until the backend has sent `count` requests in all; the log so far."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} shared memory requests")
            return list(self.requests)

    def view(self, shmid: int, offset: int, length: int) -> memoryview:
        """`length` bytes at `offset` of region `shmid`, inside one mapping (the guest
        would fault on a hole)."""
        with self.cond:
            for m in self.maps.values():
                if (
                    m.shmid == shmid
                    and m.shm_offset <= offset
                    and (offset + length <= m.shm_offset + m.length)
                ):
                    start = offset - m.shm_offset
                    if start + length > len(m.pages):
                        break  # past the end of the file: the guest would fault
                    return memoryview(m.pages)[start : start + length]
        raise VhostUserError(f"[{offset:#x}, +{length:#x}) of region {shmid} is not mapped")

    def drop_all(self) -> None:
        """A device reset: the VMM unmaps everything."""
        with self.cond:
            for m in self.maps.values():
                _release(m.pages)
            self.maps.clear()

    def close(self) -> None:
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the serving thread
        except OSError:
            pass
        self._thread.join(timeout=5)
        self.conn.close()
        self.drop_all()


def _release(pages: mmap.mmap) -> None:
    """Unmap now, or, while a test still holds a view of the pages, when it lets go."""
    try:
        pages.close()
    except BufferError:
        pass


@dataclass
class DeviceInfo:
    features: int
    protocol_features: ProtocolFeature
    queue_num: int | None


class Frontend:
    """A vhost-user frontend connection to a backend's socket."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.protocol_features = ProtocolFeature(0)
        self.features = 0
        self.ram: GuestRam | None = None
        self.queues: list[FrontendQueue] = []
        self.shmem: VmmSharedMemory | None = None

    @classmethod
    def connect(cls, path: str | os.PathLike[str], timeout: float = 10.0) -> Frontend:
        """Connect, retrying while the daemon is still starting."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(os.fspath(path))
                return cls(Connection(sock))
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        self.conn.close()
        if self.shmem is not None:
            self.shmem.close()
        for queue in self.queues:
            queue.close()
        if self.ram is not None:
            self.ram.close()

    def __enter__(self) -> Frontend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- raw messages ----------------------------------------------------------------

    def request(
        self,
        request: int,
        payload: bytes = b"",
        fds: Sequence[int] = (),
        *,
        need_reply: bool = False,
        reply: bool = False,
        timeout: float = 5.0,
    ) -> bytes | None:
        """Send one request; return the reply payload if one is expected.

        With `need_reply` (and REPLY_ACK negotiated) a non-zero ack raises
        ProtocolError, which is how the backend reports a failed request.
        """
        flags = HeaderFlag.VERSION | (HeaderFlag.NEED_REPLY if need_reply else 0)
        self.conn.send(request, payload, tuple(fds), flags=flags)
        if not (reply or (need_reply and self.protocol_features & ProtocolFeature.REPLY_ACK)):
            return None
        self.conn.sock.settimeout(timeout)
        try:
            msg = self.conn.recv()
        except TimeoutError as exc:
            raise ProtocolError(f"no reply to request {request} in {timeout} s") from exc
        finally:
            self.conn.sock.settimeout(None)
        msg.close_fds()
        if msg.header.request != request or not msg.header.flags & HeaderFlag.REPLY:
            raise ProtocolError(f"reply {msg.header} does not answer request {request}")
        if not reply:
            if U64.decode(msg.payload).value != 0:
                raise ProtocolError(f"backend rejected request {request_name(request)}")
            return None
        return msg.payload

    def _ask(self, request: Request, payload: bytes = b"") -> bytes:
        answer = self.request(request, payload, reply=True)
        assert answer is not None
        return answer

    def _ask_u64(self, request: Request) -> int:
        return U64.decode(self._ask(request)).value

    def _tell(self, request: Request, payload: bytes = b"", fds: Sequence[int] = ()) -> None:
        """Send and, with REPLY_ACK negotiated, wait for the ack (raise on failure)."""
        ack = bool(self.protocol_features & ProtocolFeature.REPLY_ACK)
        self.request(request, payload, fds, need_reply=ack)

    # -- typed requests --------------------------------------------------------------

    def get_features(self) -> int:
        return self._ask_u64(Request.GET_FEATURES)

    def set_features(self, features: int) -> None:
        self._tell(Request.SET_FEATURES, U64(features).encode())
        self.features = features

    def get_protocol_features(self) -> ProtocolFeature:
        return ProtocolFeature(self._ask_u64(Request.GET_PROTOCOL_FEATURES))

    def set_protocol_features(self, features: ProtocolFeature) -> None:
        self.request(Request.SET_PROTOCOL_FEATURES, U64(int(features)).encode())
        self.protocol_features = features

    def set_owner(self) -> None:
        self._tell(Request.SET_OWNER)

    def get_queue_num(self) -> int:
        return self._ask_u64(Request.GET_QUEUE_NUM)

    def set_mem_table(self, regions: Sequence[MemoryRegionDesc], fds: Sequence[int]) -> None:
        self._tell(Request.SET_MEM_TABLE, MemTable(tuple(regions)).encode(), fds)

    def get_max_mem_slots(self) -> int:
        return self._ask_u64(Request.GET_MAX_MEM_SLOTS)

    def add_mem_reg(self, region: MemoryRegionDesc, fd: int) -> None:
        self._tell(Request.ADD_MEM_REG, SingleRegion(region).encode(), [fd])

    def rem_mem_reg(self, region: MemoryRegionDesc) -> None:
        self._tell(Request.REM_MEM_REG, SingleRegion(region).encode())

    def set_vring_num(self, index: int, num: int) -> None:
        self._tell(Request.SET_VRING_NUM, VringState(index, num).encode())

    def set_vring_base(self, index: int, base: int) -> None:
        self._tell(Request.SET_VRING_BASE, VringState(index, base).encode())

    def get_vring_base(self, index: int) -> int:
        return VringState.decode(
            self._ask(Request.GET_VRING_BASE, VringState(index, 0).encode())
        ).num

    def set_vring_addr(self, index: int, desc: int, used: int, avail: int) -> None:
        """Addresses are GPAs of GuestRam; sent as VMM addresses, as QEMU does."""
        self._tell(
            Request.SET_VRING_ADDR,
            VringAddr(index, 0, VMM_BASE + desc, VMM_BASE + used, VMM_BASE + avail, 0).encode(),
        )

    def _set_vring_fd(self, request: Request, index: int, fd: int | None) -> None:
        word = index if fd is not None else index | VRING_NOFD_MASK
        self._tell(request, U64(word).encode(), [] if fd is None else [fd])

    def set_vring_kick(self, index: int, fd: int | None) -> None:
        self._set_vring_fd(Request.SET_VRING_KICK, index, fd)

    def set_vring_call(self, index: int, fd: int | None) -> None:
        self._set_vring_fd(Request.SET_VRING_CALL, index, fd)

    def set_vring_err(self, index: int, fd: int | None) -> None:
        self._set_vring_fd(Request.SET_VRING_ERR, index, fd)

    def set_vring_enable(self, index: int, enable: bool) -> None:
        self._tell(Request.SET_VRING_ENABLE, VringState(index, int(enable)).encode())

    def get_config(self, offset: int, size: int) -> bytes:
        answer = self._ask(Request.GET_CONFIG, ConfigSpace(offset, size, 0, bytes(size)).encode())
        if not answer:
            raise ProtocolError(f"backend refused GET_CONFIG [{offset}, {offset + size})")
        return ConfigSpace.decode(answer).data

    def set_config(self, offset: int, data: bytes) -> None:
        self._tell(Request.SET_CONFIG, ConfigSpace(offset, len(data), 0, data).encode())

    def get_inflight_fd(self, num_queues: int, queue_size: int) -> tuple[Inflight, int]:
        """GET_INFLIGHT_FD: the backend's inflight region and its memfd (the caller
        owns the fd and keeps it across a backend restart, as QEMU does)."""
        payload = Inflight(0, 0, num_queues, queue_size).encode()
        self.conn.send(Request.GET_INFLIGHT_FD, payload, ())
        msg = self.conn.recv()
        if msg.header.request != Request.GET_INFLIGHT_FD or not msg.fds:
            msg.close_fds()
            raise ProtocolError("backend refused GET_INFLIGHT_FD")
        fd = msg.take_fd()
        msg.close_fds()
        return Inflight.decode(msg.payload), fd

    def set_inflight_fd(self, inflight: Inflight, fd: int) -> None:
        self._tell(Request.SET_INFLIGHT_FD, inflight.encode(), fds=[fd])

    def set_status(self, status: int) -> None:
        self._tell(Request.SET_STATUS, U64(status).encode())

    def get_status(self) -> int:
        return self._ask_u64(Request.GET_STATUS)

    def reset_device(self) -> None:
        self._tell(Request.RESET_DEVICE)
        if self.shmem is not None:
            self.shmem.drop_all()

    def get_shmem_config(self) -> tuple[int, ...]:
        """GET_SHMEM_CONFIG: the device's shared-memory region sizes, by shmid."""
        return ShmemConfig.decode(self._ask(Request.GET_SHMEM_CONFIG)).sizes

    def open_shmem(self, sizes: Sequence[int] | None = None) -> VmmSharedMemory:
        """Play the VMM's part of SHMEM: reserve the regions (GET_SHMEM_CONFIG's, or
        `sizes`) and hand the backend a request channel (SET_BACKEND_REQ_FD) on which
        its SHMEM_MAP / SHMEM_UNMAP are served. Needs SHMEM, BACKEND_REQ and
        BACKEND_SEND_FD negotiated."""
        if sizes is None:
            sizes = self.get_shmem_config()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.set_backend_req_fd(theirs.fileno())
        finally:
            theirs.close()
        self.shmem = VmmSharedMemory(sizes, ours)
        return self.shmem

    def set_backend_req_fd(self, fd: int) -> None:
        self._tell(Request.SET_BACKEND_REQ_FD, fds=[fd])

    def gpu_set_socket(self, fd: int) -> None:
        """VHOST_USER_GPU_SET_SOCKET: hand a GPU backend its display channel, as QEMU's
        vhost-user-gpu does at DRIVER_OK (QEMU sends it without NEED_REPLY)."""
        self.request(Request.GPU_SET_SOCKET, fds=[fd])

    # -- the QEMU-like set-up sequence ---------------------------------------------------

    def negotiate(
        self, *, want_features: int | None = None, want_protocol: ProtocolFeature | None = None
    ) -> DeviceInfo:
        """GET/SET features and protocol features the way QEMU does."""
        offered = self.get_features()
        protocol = ProtocolFeature(0)
        queue_num = None
        if offered & VHOST_USER_F_PROTOCOL_FEATURES:
            offered_protocol = self.get_protocol_features()
            protocol = (
                offered_protocol if want_protocol is None else (offered_protocol & want_protocol)
            )
            self.set_protocol_features(protocol)
            if protocol & ProtocolFeature.MQ:
                queue_num = self.get_queue_num()
        self.set_owner()
        features = offered if want_features is None else offered & want_features
        self.set_features(features)
        return DeviceInfo(features, protocol, queue_num)

    def start_device(
        self,
        num_queues: int,
        queue_size: int = 256,
        *,
        memory_size: int = 16 << 20,
        features: int | None = None,
        protocol: ProtocolFeature | None = None,
        use_mem_slots: bool = False,
    ) -> list[FrontendQueue]:
        """Negotiate, share memory and start `num_queues` rings, as QEMU does.

        `features` defaults to what the device offers out of STANDARD_FEATURES plus its
        own bits; pass a mask to drop e.g. EVENT_IDX.
        """
        info = self.negotiate(want_features=features, want_protocol=protocol)
        self.ram = GuestRam(memory_size)
        if use_mem_slots and info.protocol_features & ProtocolFeature.CONFIGURE_MEM_SLOTS:
            self.add_mem_reg(self.ram.region(), self.ram.fd)
        else:
            self.set_mem_table([self.ram.region()], [self.ram.fd])
        event_idx = bool(info.features & VIRTIO_RING_F_EVENT_IDX)
        for index in range(num_queues):
            queue = FrontendQueue(self.ram, index, queue_size, event_idx=event_idx)
            self.queues.append(queue)
            self.start_vring(queue)
        return self.queues

    def start_vring(self, queue: FrontendQueue, base: int = 0) -> None:
        """Give the backend one ring, as QEMU does at start and again after a
        GET_VRING_BASE (a paused VM resuming), from avail index `base`."""
        self.set_vring_num(queue.index, queue.size)
        self.set_vring_base(queue.index, base)
        self.set_vring_addr(queue.index, queue.desc, queue.used, queue.avail)
        self.set_vring_call(queue.index, queue.call_fd)
        self.set_vring_kick(queue.index, queue.kick_fd)
        if self.features & VHOST_USER_F_PROTOCOL_FEATURES:
            self.set_vring_enable(queue.index, True)

    def sync(self) -> None:
        """Round-trip a harmless request, so every earlier one has been handled."""
        self.get_features()


__all__ = [
    "Frontend",
    "FrontendQueue",
    "GuestRam",
    "DeviceInfo",
    "STANDARD_FEATURES",
    "VMM_BASE",
    "VmmMapping",
    "VmmSharedMemory",
]
