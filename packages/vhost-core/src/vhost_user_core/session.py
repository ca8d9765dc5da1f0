"""One vhost-user connection: the request handler that owns memory, rings and workers.

Each request is checked against protocol.REQUEST_SPECS (fd count, payload, negotiated
features) before its handler runs; a failing request is answered with an error reply
(REPLY_ACK, or the request's own failure reply) and never ends the daemon.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Callable

from .backend import FRAMEWORK_PROTOCOL_FEATURES, VhostUserBackend
from .connection import Connection, Message
from .errors import ProtocolError, QueueError, VhostUserError
from .fastpath import Kick
from .inflight import InflightRegion
from .memory import MAX_REGIONS, GuestMemory
from .protocol import (
    REQUEST_SPECS,
    STATUS_NEEDS_RESET,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VIRTIO_RING_F_EVENT_IDX,
    ConfigSpace,
    Inflight,
    MemTable,
    ProtocolFeature,
    ReplyKind,
    Request,
    ShmemConfig,
    SingleRegion,
    VringAddr,
    VringState,
    check_fd_count,
    decode_payload,
    request_name,
    vring_fd_index,
)
from .shmem import SharedMemory
from .vring import Vring
from .worker import Worker

log = logging.getLogger(__name__)

Handler = Callable[[object, Message], bytes | None]

DESC_SIZE = 16
#: What a device with shared-memory regions needs negotiated: SHMEM itself, and a
#: backend channel that carries the fds SHMEM_MAP hands over.
SHMEM_FEATURES = (
    ProtocolFeature.SHMEM | ProtocolFeature.BACKEND_REQ | ProtocolFeature.BACKEND_SEND_FD
)


class Session:
    """Serves one frontend connection with one backend instance."""

    def __init__(self, conn: Connection, backend: VhostUserBackend) -> None:
        self.conn = conn
        self.backend = backend
        self.lock = backend.session_lock()
        self.memory = GuestMemory()
        self.acked_features = 0
        self.acked_protocol_features = ProtocolFeature(0)
        self.status = 0
        self.backend_channel: Connection | None = None
        self.workers = [
            Worker(f"{backend.name}-worker{i}", self.lock)
            for i in range(len(backend.queues_per_thread()))
        ]
        self.vrings = [
            Vring(i, backend.max_queue_size, self.workers[self._worker_of(i)])
            for i in range(backend.num_queues)
        ]
        #: Rings whose kick fd is in their worker's epoll set.
        self._watching: set[int] = set()
        #: The inflight region (INFLIGHT_SHMFD), once the front-end set or got one.
        self.inflight: InflightRegion | None = None
        #: Fds the reply being built carries (GET_INFLIGHT_FD's memfd).
        self._reply_fds: tuple[int, ...] = ()
        self._handlers: dict[Request, Handler] = {
            Request.GET_FEATURES: self._get_features,
            Request.SET_FEATURES: self._set_features,
            Request.SET_OWNER: self._set_owner,
            Request.RESET_OWNER: self._reset_device,
            Request.SET_MEM_TABLE: self._set_mem_table,
            Request.SET_VRING_NUM: self._set_vring_num,
            Request.SET_VRING_ADDR: self._set_vring_addr,
            Request.SET_VRING_BASE: self._set_vring_base,
            Request.GET_VRING_BASE: self._get_vring_base,
            Request.SET_VRING_KICK: self._set_vring_kick,
            Request.SET_VRING_CALL: self._set_vring_call,
            Request.SET_VRING_ERR: self._set_vring_err,
            Request.GET_PROTOCOL_FEATURES: self._get_protocol_features,
            Request.SET_PROTOCOL_FEATURES: self._set_protocol_features,
            Request.GET_QUEUE_NUM: self._get_queue_num,
            Request.SET_VRING_ENABLE: self._set_vring_enable,
            Request.SET_BACKEND_REQ_FD: self._set_backend_req_fd,
            Request.GET_CONFIG: self._get_config,
            Request.SET_CONFIG: self._set_config,
            Request.RESET_DEVICE: self._reset_device,
            Request.GET_MAX_MEM_SLOTS: self._get_max_mem_slots,
            Request.ADD_MEM_REG: self._add_mem_reg,
            Request.REM_MEM_REG: self._rem_mem_reg,
            Request.SET_STATUS: self._set_status,
            Request.GET_STATUS: self._get_status,
            Request.GPU_SET_SOCKET: self._gpu_set_socket,
            Request.GET_INFLIGHT_FD: self._get_inflight_fd,
            Request.SET_INFLIGHT_FD: self._set_inflight_fd,
            Request.GET_SHMEM_CONFIG: self._get_shmem_config,
        }
        #: The device's shared-memory regions (SHMEM), if it declares any.
        regions = backend.shmem_regions()
        self.shmem = SharedMemory(regions) if any(regions) else None
        if self.shmem is not None:
            backend.attach_shmem(self.shmem)
        for worker in self.workers:
            worker.start()
        backend.attach(self.workers, self.vrings)

    # -- what we offer ---------------------------------------------------------------

    @property
    def offered_features(self) -> int:
        return self.backend.features | VHOST_USER_F_PROTOCOL_FEATURES

    @property
    def offered_protocol_features(self) -> ProtocolFeature:
        offered = self.backend.protocol_features | FRAMEWORK_PROTOCOL_FEATURES
        if self.backend.config_space():
            offered |= ProtocolFeature.CONFIG
        if self.shmem is not None:
            offered |= SHMEM_FEATURES
        return offered

    def _worker_of(self, queue: int) -> int:
        for i, mask in enumerate(self.backend.queues_per_thread()):
            if mask & (1 << queue):
                return i
        raise ValueError(f"queue {queue} is in no worker's mask")

    # -- the request loop ------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Check, dispatch and answer one request; the fds it did not keep are closed."""
        header = msg.header
        name = request_name(header.request)
        ok = True
        reply: bytes | None = None
        try:
            with self.lock:
                reply = self._dispatch(msg)
        except VhostUserError as exc:
            ok = False
            log.error("%s failed: %s", name, exc)
        except OSError as exc:
            ok = False
            log.error("%s failed: %s", name, exc)
        finally:
            msg.close_fds()
        self._answer(msg, ok, reply)

    def _dispatch(self, msg: Message) -> bytes | None:
        try:
            request = Request(msg.header.request)
        except ValueError:
            raise ProtocolError(f"unknown request id {msg.header.request}") from None
        spec = REQUEST_SPECS[request]
        check_fd_count(request, len(msg.fds))
        if spec.needs is not None and not self.acked_protocol_features & spec.needs:
            raise ProtocolError(f"{request.name} needs protocol feature {spec.needs.name}")
        handler = self._handlers.get(request)
        if handler is None:
            raise ProtocolError(f"{request.name} is not supported by this backend")
        payload = decode_payload(request, msg.payload)
        log.debug("%s %s", request.name, payload)
        return handler(payload, msg)

    def _answer(self, msg: Message, ok: bool, reply: bytes | None) -> None:
        header = msg.header
        try:
            spec = REQUEST_SPECS[Request(header.request)]
        except ValueError:
            spec = None
        fds, self._reply_fds = self._reply_fds, ()
        if spec is not None and spec.reply is ReplyKind.ALWAYS:
            if ok and reply is not None:
                self.conn.reply(header.request, reply, fds)
            else:
                self.conn.reply(
                    header.request, _failure_reply(Request(header.request), msg.payload)
                )
        elif header.need_reply and self.acked_protocol_features & ProtocolFeature.REPLY_ACK:
            self.conn.ack(header.request, ok)

    # -- features --------------------------------------------------------------------

    def _get_features(self, _p: object, _m: Message) -> bytes:
        return U64(self.offered_features).encode()

    def _set_features(self, p: object, _m: Message) -> None:
        assert isinstance(p, U64)
        extra = p.value & ~self.offered_features
        if extra:
            raise ProtocolError(f"SET_FEATURES acks bits never offered: {extra:#x}")
        self.acked_features = p.value
        event_idx = bool(p.value & VIRTIO_RING_F_EVENT_IDX)
        for vring in self.vrings:
            vring.queue.event_idx = event_idx
        if not p.value & VHOST_USER_F_PROTOCOL_FEATURES:
            # Without PROTOCOL_FEATURES there is no SET_VRING_ENABLE: rings start enabled.
            for vring in self.vrings:
                self._enable(vring, True)
        self.backend.acked_features(p.value)
        return None

    def _get_protocol_features(self, _p: object, _m: Message) -> bytes:
        return U64(int(self.offered_protocol_features)).encode()

    def _set_protocol_features(self, p: object, _m: Message) -> None:
        assert isinstance(p, U64)
        extra = p.value & ~int(self.offered_protocol_features)
        if extra:
            raise ProtocolError(f"SET_PROTOCOL_FEATURES acks bits never offered: {extra:#x}")
        self.acked_protocol_features = ProtocolFeature(p.value)
        if self.shmem is not None:
            self.shmem._set_features(self.acked_protocol_features)
        return None

    def _set_owner(self, _p: object, _m: Message) -> None:
        return None

    def _get_queue_num(self, _p: object, _m: Message) -> bytes:
        return U64(self.backend.num_queues).encode()

    # -- memory ----------------------------------------------------------------------

    def _set_mem_table(self, p: object, msg: Message) -> None:
        assert isinstance(p, MemTable)
        if len(p.regions) != len(msg.fds):
            raise ProtocolError(f"{len(p.regions)} regions but {len(msg.fds)} fds")
        memory = GuestMemory()
        try:
            for region, fd in zip(p.regions, msg.fds, strict=True):
                memory.add_region(
                    region.guest_phys_addr,
                    region.size,
                    region.userspace_addr,
                    region.mmap_offset,
                    fd,
                )
        except BaseException:
            memory.close()
            raise
        old, self.memory = self.memory, memory
        self._memory_changed()
        old.close()
        return None

    def _add_mem_reg(self, p: object, msg: Message) -> None:
        assert isinstance(p, SingleRegion)
        r = p.region
        self.memory.add_region(
            r.guest_phys_addr, r.size, r.userspace_addr, r.mmap_offset, msg.fds[0]
        )
        self._memory_changed()
        return None

    def _rem_mem_reg(self, p: object, _m: Message) -> None:
        assert isinstance(p, SingleRegion)
        self.memory.remove_region(p.region.guest_phys_addr, p.region.size)
        self._memory_changed()
        return None

    def _get_max_mem_slots(self, _p: object, _m: Message) -> bytes:
        return U64(MAX_REGIONS).encode()

    def _memory_changed(self) -> None:
        for vring in self.vrings:
            if vring.queue.configured or vring.started:
                try:
                    vring.queue.set_memory(self.memory)
                except QueueError as exc:
                    log.warning("queue %d not usable with the new memory: %s", vring.index, exc)
            self._update_registration(vring)
        self.backend.memory_changed(self.memory)

    # -- rings -----------------------------------------------------------------------

    def _vring(self, index: int) -> Vring:
        if not 0 <= index < len(self.vrings):
            raise ProtocolError(f"queue index {index} out of range (0..{len(self.vrings) - 1})")
        return self.vrings[index]

    def _set_vring_num(self, p: object, _m: Message) -> None:
        assert isinstance(p, VringState)
        self._vring(p.index).queue.set_size(p.num)
        return None

    def _set_vring_addr(self, p: object, _m: Message) -> None:
        assert isinstance(p, VringAddr)
        vring = self._vring(p.index)
        size = vring.queue.size
        desc = self.memory.vmm_to_guest(p.desc, DESC_SIZE * size)
        avail = self.memory.vmm_to_guest(p.avail, 6 + 2 * size)
        used = self.memory.vmm_to_guest(p.used, 6 + 8 * size)
        vring.queue.set_addresses(self.memory, desc, avail, used)
        vring.queue.sync_used_index()
        self._update_registration(vring)
        return None

    def _set_vring_base(self, p: object, _m: Message) -> None:
        assert isinstance(p, VringState)
        if p.num > 0xFFFF:
            raise ProtocolError(f"vring base {p.num} does not fit 16 bits")
        self._vring(p.index).queue.next_avail = p.num
        return None

    def _get_vring_base(self, p: object, _m: Message) -> bytes:
        assert isinstance(p, VringState)
        vring = self._vring(p.index)
        base = vring.queue.next_avail
        self._stop(vring)
        return VringState(p.index, base).encode()

    def _stop(self, vring: Vring) -> None:
        """GET_VRING_BASE / reset: the ring stops and forgets its fds and addresses."""
        if vring.ready:
            self.backend.queue_stopped(vring)
        vring._set_stopped()
        self._update_registration(vring)
        vring._close_fds()
        vring.queue.reset()

    def _set_vring_kick(self, p: object, msg: Message) -> None:
        vring, has_fd = self._vring_fd_target(p, msg)
        if not has_fd:
            raise ProtocolError("polling mode (kick without an fd) is not supported")
        fd = msg.take_fd()
        if not _pollable(fd):
            # A file or /dev/null: epoll would refuse it (EPERM) once the ring starts,
            # and every later start with it (found by fuzzing). Refused here instead.
            os.close(fd)
            raise ProtocolError(f"queue {vring.index}: the kick fd cannot be polled")
        if vring.kick_fd is not None:
            vring.worker.remove_reader(vring.kick_fd)
        vring._set_kick_fd(fd)
        if self.inflight is not None:
            vring._track_inflight(self.inflight.queue(vring.index))
        self._update_registration(vring)
        return None

    # -- inflight I/O tracking (opt-in: a backend offering INFLIGHT_SHMFD) -----------

    def _check_inflight_shape(self, num_queues: int, queue_size: int) -> None:
        if not 1 <= num_queues <= self.backend.num_queues:
            raise ProtocolError(
                f"inflight region for {num_queues} queues, device has {self.backend.num_queues}"
            )
        if not 1 <= queue_size <= self.backend.max_queue_size:
            raise ProtocolError(
                f"inflight queue size {queue_size} over {self.backend.max_queue_size}"
            )

    def _set_region(self, region: InflightRegion) -> None:
        if self.inflight is not None:
            for vring in self.vrings:
                vring._track_inflight(None)
            self.inflight.close()
        self.inflight = region

    def _get_inflight_fd(self, p: object, _m: Message) -> bytes:
        assert isinstance(p, Inflight)
        self._check_inflight_shape(p.num_queues, p.queue_size)
        self._set_region(InflightRegion.create(p.num_queues, p.queue_size))
        assert self.inflight is not None
        self._reply_fds = (self.inflight.fd,)
        return Inflight(self.inflight.size, 0, p.num_queues, p.queue_size).encode()

    def _set_inflight_fd(self, p: object, msg: Message) -> None:
        assert isinstance(p, Inflight)
        self._check_inflight_shape(p.num_queues, p.queue_size)
        fd = msg.take_fd()
        try:
            region = InflightRegion(fd, p.mmap_size, p.mmap_offset, p.num_queues, p.queue_size)
        except BaseException:
            os.close(fd)
            raise
        self._set_region(region)
        return None

    def _set_vring_call(self, p: object, msg: Message) -> None:
        vring, has_fd = self._vring_fd_target(p, msg)
        vring._set_call_fd(msg.take_fd() if has_fd else None)
        if has_fd and vring.started and self._reconnectable:
            # A ring already running gets a new call fd (QEMU after a reconnect sends
            # it last): interrupt once, or a completion signalled on the old fd in
            # between is never seen and the guest waits forever. Only for a backend
            # that resumes after a crash (INFLIGHT_SHMFD): other devices keep the
            # interrupts they always had (rng's rate-limit guest test notices one more).
            vring.signal()
        return None

    @property
    def _reconnectable(self) -> bool:
        return bool(self.backend.protocol_features & ProtocolFeature.INFLIGHT_SHMFD)

    def _set_vring_err(self, p: object, msg: Message) -> None:
        vring, has_fd = self._vring_fd_target(p, msg)
        vring._set_err_fd(msg.take_fd() if has_fd else None)
        return None

    def _vring_fd_target(self, p: object, msg: Message) -> tuple[Vring, bool]:
        assert isinstance(p, U64)
        index, has_fd = vring_fd_index(p.value)
        if has_fd != bool(msg.fds):
            raise ProtocolError(
                f"vring word says fd {'attached' if has_fd else 'absent'} "
                f"but {len(msg.fds)} fds came"
            )
        return self._vring(index), has_fd

    def _set_vring_enable(self, p: object, _m: Message) -> None:
        assert isinstance(p, VringState)
        if not self.acked_features & VHOST_USER_F_PROTOCOL_FEATURES:
            raise ProtocolError("SET_VRING_ENABLE without PROTOCOL_FEATURES negotiated")
        if p.num not in (0, 1):
            raise ProtocolError(f"SET_VRING_ENABLE with num {p.num}")
        self._enable(self._vring(p.index), bool(p.num))
        return None

    def _enable(self, vring: Vring, enabled: bool) -> None:
        vring._set_enabled(enabled)
        self._update_registration(vring)

    def _update_registration(self, vring: Vring) -> None:
        """Watch the kick fd exactly while the ring is active; on start, look for work
        the driver posted before the kick fd existed (a restarted or restored guest)."""
        kick = vring.kick_fd
        if kick is None:
            return
        if vring.active:
            was_watching = vring.index in self._watching
            # A fast path pops and completes in C: on a ring with inflight records,
            # `Kick` uses only one that keeps them (`QueueFastPath.keeps_inflight`).
            fast = self.backend.fast_path(vring)
            reader = Kick(kick, vring, self._process, fast)
            vring.worker.add_reader(kick, reader)
            self._watching.add(vring.index)
            if not was_watching:
                vring.worker.call_soon(reader.serve)
        elif vring.index in self._watching:
            vring.worker.remove_reader(kick)
            self._watching.discard(vring.index)

    def _kicked(self, vring: Vring) -> None:
        """A kick as a plain callback (what `Kick` does, for a caller without one)."""
        if vring.kick_fd is None:
            return
        try:
            os.eventfd_read(vring.kick_fd)
        except BlockingIOError:
            pass
        self._process(vring)

    def _process(self, vring: Vring) -> None:
        if vring.active:
            self.backend.handle_queue(vring)
            if vring.queue.broken:
                self.status |= STATUS_NEEDS_RESET

    # -- config, status, reset, backend channel ---------------------------------------

    def _get_config(self, p: object, _m: Message) -> bytes:
        assert isinstance(p, ConfigSpace)
        data = self.backend.get_config(p.offset, p.size)
        if len(data) != p.size:
            raise ProtocolError(f"backend returned {len(data)} config bytes for {p.size}")
        return ConfigSpace(p.offset, p.size, p.flags, data).encode()

    def _set_config(self, p: object, _m: Message) -> None:
        assert isinstance(p, ConfigSpace)
        self.backend.set_config(p.offset, p.data)
        return None

    def _set_status(self, p: object, _m: Message) -> None:
        assert isinstance(p, U64)
        if p.value > 0xFF:
            raise ProtocolError(f"device status {p.value:#x} does not fit 8 bits")
        self.status = p.value
        return None

    def _get_status(self, _p: object, _m: Message) -> bytes:
        return U64(self.status).encode()

    def _reset_device(self, _p: object, _m: Message) -> None:
        for vring in self.vrings:
            self._stop(vring)
            vring._set_enabled(False)
        self.acked_features = 0
        self.status = 0
        if self.shmem is not None:
            self.shmem._forget()
        self.backend.reset()
        return None

    def _set_backend_req_fd(self, _p: object, msg: Message) -> None:
        import socket

        if self.backend_channel is not None:
            self.backend_channel.close()
        sock = socket.socket(fileno=msg.take_fd())
        self.backend_channel = Connection(sock)
        if self.shmem is not None:
            self.shmem._set_channel(self.backend_channel)
        return None

    def _get_shmem_config(self, _p: object, _m: Message) -> bytes:
        if self.shmem is None:
            raise ProtocolError("this device has no shared memory regions")
        return self.shmem.config.encode()

    def _gpu_set_socket(self, _p: object, msg: Message) -> None:
        import socket

        self.backend.gpu_socket(socket.socket(fileno=msg.take_fd()))
        return None

    # -- teardown ---------------------------------------------------------------------

    def close(self) -> None:
        """End of the connection: stop workers, release fds, memory and the backend."""
        for worker in self.workers:
            worker.stop()
        for vring in self.vrings:
            vring._close_fds()
        if self.shmem is not None:
            self.shmem._set_channel(None)
        if self.backend_channel is not None:
            self.backend_channel.close()
        try:
            self.backend.close()
        finally:
            self.memory.close()
            if self.inflight is not None:
                self.inflight.close()


def _failure_reply(request: Request, payload: bytes) -> bytes:
    """A well-formed reply that tells the frontend the request failed (so it never
    waits for a reply that is not coming)."""
    if request is Request.GET_VRING_BASE:
        index = VringState.decode(payload).index if len(payload) == 8 else 0
        return VringState(index, 0).encode()
    if request is Request.GET_CONFIG:
        return b""
    if request is Request.GET_INFLIGHT_FD:
        return Inflight(0, 0, 0, 0).encode()
    if request is Request.GET_SHMEM_CONFIG:
        return ShmemConfig(()).encode()
    return U64(1).encode()


def _pollable(fd: int) -> bool:
    """Whether epoll can watch `fd` (files and /dev/null it cannot)."""
    probe = select.epoll()
    try:
        probe.register(fd, select.EPOLLIN)
    except OSError:
        return False
    finally:
        probe.close()
    return True
