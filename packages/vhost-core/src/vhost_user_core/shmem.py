"""vhost-user shared memory (VHOST_USER_PROTOCOL_F_SHMEM), the backend's side.

A device declares regions (`VhostUserBackend.shmem_regions`: a size per shmid); the VMM
reserves each as guest-visible memory (a PCI BAR in cloud-hypervisor, crosvm and QEMU's
vhost-user-device) and learns the sizes with GET_SHMEM_CONFIG. The device then asks the
VMM, over the backend request channel (SET_BACKEND_REQ_FD), to map a range of one of
its fds into a region (SHMEM_MAP) or to drop one (SHMEM_UNMAP); the guest sees the
pages at that offset of the region. `SharedMemory` is that handle: ranges are checked
here first (page-aligned, inside the region, not overlapping a live mapping), so a
guest-chosen offset never reaches the VMM unchecked, and each request waits for the
VMM's REPLY_ACK when that was negotiated.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .connection import Connection
from .errors import BackendError, Disconnected, ProtocolError
from .protocol import (
    SHMEM_MAP_WRITABLE,
    SHMEM_MAX_REGIONS,
    U64,
    BackendRequest,
    HeaderFlag,
    ProtocolFeature,
    ShmemConfig,
    ShmemMap,
)

PAGE_SIZE = mmap.PAGESIZE
#: How long a map or unmap waits for the VMM's acknowledgement.
REPLY_TIMEOUT = 5.0


class SharedMemoryError(BackendError):
    """A map or unmap that was refused, here (bad range) or by the VMM."""


@dataclass(frozen=True, slots=True)
class Mapping:
    shmid: int
    shm_offset: int
    length: int
    writable: bool

    @property
    def end(self) -> int:
        return self.shm_offset + self.length


class SharedMemory:
    """The device's shared-memory regions on one connection, and its live mappings."""

    def __init__(self, sizes: Sequence[int]) -> None:
        if len(sizes) > SHMEM_MAX_REGIONS:
            raise BackendError(f"{len(sizes)} shared memory ids, at most {SHMEM_MAX_REGIONS}")
        for shmid, size in enumerate(sizes):
            if size < 0 or size % PAGE_SIZE:
                raise BackendError(f"shared memory region {shmid}: {size} is not whole pages")
        self.sizes = tuple(sizes)
        self._maps: dict[tuple[int, int], Mapping] = {}
        self._channel: Connection | None = None
        self._features = ProtocolFeature(0)
        self._lock = threading.Lock()

    @property
    def config(self) -> ShmemConfig:
        """GET_SHMEM_CONFIG's answer."""
        return ShmemConfig(self.sizes)

    @property
    def mappings(self) -> list[Mapping]:
        return sorted(self._maps.values(), key=lambda m: (m.shmid, m.shm_offset))

    @property
    def ready(self) -> bool:
        """The VMM gave a backend channel that can carry fds: maps can be asked for."""
        need = ProtocolFeature.BACKEND_REQ | ProtocolFeature.BACKEND_SEND_FD
        return self._channel is not None and self._features & need == need

    def map(
        self,
        shmid: int,
        fd: int,
        *,
        shm_offset: int,
        length: int,
        fd_offset: int = 0,
        writable: bool = True,
    ) -> Mapping:
        """Map `length` bytes of `fd` from `fd_offset` at `shm_offset` of region
        `shmid`; raises SharedMemoryError if the range is bad or the VMM refuses."""
        self._check_range(shmid, shm_offset, length)
        if fd_offset < 0 or fd_offset % PAGE_SIZE:
            raise SharedMemoryError(f"fd offset {fd_offset:#x} is not page-aligned")
        mapping = Mapping(shmid, shm_offset, length, writable)
        with self._lock:
            for other in self._maps.values():
                if (
                    other.shmid == shmid
                    and other.shm_offset < mapping.end
                    and (shm_offset < other.end)
                ):
                    raise SharedMemoryError(
                        f"[{shm_offset:#x}, {mapping.end:#x}) of region {shmid} overlaps "
                        f"the mapping at {other.shm_offset:#x}"
                    )
            flags = SHMEM_MAP_WRITABLE if writable else 0
            self._send(
                BackendRequest.SHMEM_MAP, ShmemMap(shmid, fd_offset, shm_offset, length, flags), fd
            )
            self._maps[(shmid, shm_offset)] = mapping
        return mapping

    def unmap(self, shmid: int, shm_offset: int, length: int) -> None:
        """Drop the mapping that starts at `shm_offset` (the range must be the one
        mapped). The bookkeeping forgets it even if the VMM cannot be told."""
        with self._lock:
            mapping = self._maps.get((shmid, shm_offset))
            if mapping is None or mapping.length != length:
                raise SharedMemoryError(
                    f"no mapping of {length:#x} bytes at {shm_offset:#x} of region {shmid}"
                )
            del self._maps[(shmid, shm_offset)]
            self._send(BackendRequest.SHMEM_UNMAP, ShmemMap(shmid, 0, shm_offset, length), None)

    def _check_range(self, shmid: int, offset: int, length: int) -> None:
        if not 0 <= shmid < len(self.sizes) or not self.sizes[shmid]:
            raise SharedMemoryError(f"no shared memory region {shmid}")
        size = self.sizes[shmid]
        if length <= 0 or offset < 0 or offset % PAGE_SIZE or length % PAGE_SIZE:
            raise SharedMemoryError(f"[{offset:#x}, +{length:#x}) is not whole pages")
        if offset + length > size:
            raise SharedMemoryError(
                f"[{offset:#x}, {offset + length:#x}) outside region {shmid} of {size:#x} bytes"
            )

    def _send(self, request: BackendRequest, payload: ShmemMap, fd: int | None) -> None:
        channel = self._channel
        if channel is None or not self.ready:
            raise SharedMemoryError("the VMM gave no backend channel that carries fds")
        ack = bool(self._features & ProtocolFeature.REPLY_ACK)
        flags = HeaderFlag.VERSION | (HeaderFlag.NEED_REPLY if ack else 0)
        try:
            channel.send(request, payload.encode(), () if fd is None else (fd,), flags=flags)
            if not ack:
                return
            channel.sock.settimeout(REPLY_TIMEOUT)
            try:
                reply = channel.recv()
            finally:
                channel.sock.settimeout(None)
        except (OSError, Disconnected, ProtocolError) as exc:
            raise SharedMemoryError(f"{request.name}: backend channel: {exc}") from exc
        reply.close_fds()
        if reply.header.request != request or not reply.header.flags & HeaderFlag.REPLY:
            raise SharedMemoryError(f"{request.name}: the VMM answered {reply.header}")
        try:
            status = U64.decode(reply.payload).value
        except ProtocolError as exc:
            raise SharedMemoryError(f"{request.name}: {exc}") from exc
        if status:
            raise SharedMemoryError(f"{request.name}: the VMM refused ({status})")

    # -- the session's (connection events) -------------------------------------------

    def _set_channel(self, channel: Connection | None) -> None:
        with self._lock:
            self._channel = channel

    def _set_features(self, features: ProtocolFeature) -> None:
        self._features = features

    def _forget(self) -> None:
        """Reset: the VMM drops every mapping itself (the spec's rule)."""
        with self._lock:
            self._maps.clear()
