"""vhost-user wire format: message ids, flags, feature bits and payload codecs.

Pure encode/decode over bytes (QEMU's docs/interop/vhost-user.rst); no I/O here, so
every parser can be tested, and fuzzed, on its own. Malformed input raises ProtocolError.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from .errors import ProtocolError

HEADER = struct.Struct("<III")
HEADER_SIZE = HEADER.size
#: Largest payload we accept; the biggest real message (SET_MEM_TABLE with 8 regions,
#: or GET_CONFIG with 256 bytes of config) is far below this.
MAX_PAYLOAD = 4096
#: Most fds a single message may carry (SET_MEM_TABLE's baseline region count).
MAX_FDS = 8
MAX_CONFIG_SIZE = 256
MEM_TABLE_MAX_REGIONS = 8


class Request(enum.IntEnum):
    """Frontend → backend requests."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    CREATE_CRYPTO_SESSION = 26
    CLOSE_CRYPTO_SESSION = 27
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GPU_SET_SOCKET = 33
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40
    GET_SHARED_OBJECT = 41
    SET_DEVICE_STATE_FD = 42
    CHECK_DEVICE_STATE = 43
    GET_SHMEM_CONFIG = 44


class BackendRequest(enum.IntEnum):
    """Backend → frontend requests, sent over the SET_BACKEND_REQ_FD channel."""

    IOTLB_MSG = 1
    CONFIG_CHANGE_MSG = 2
    VRING_HOST_NOTIFIER_MSG = 3
    VRING_CALL = 4
    VRING_ERR = 5
    SHARED_OBJECT_ADD = 6
    SHARED_OBJECT_REMOVE = 7
    SHARED_OBJECT_LOOKUP = 8
    SHMEM_MAP = 9
    SHMEM_UNMAP = 10


class HeaderFlag(enum.IntFlag):
    VERSION = 0x1
    REPLY = 0x4
    NEED_REPLY = 0x8


VERSION_MASK = 0x3


#: VHOST_USER_PROTOCOL_F_SHMEM's bit. It moved while the spec settled: 20 in QEMU's first
#: series, 21 in rust-vmm/vhost c9b80a1c (0x0020_0000, what vmsilo's cloud-hypervisor
#: fork, the VMM of the vhost-device fork we follow, negotiates), 22 in the final text
#: (crosvm since 8ae81e77). We speak 21; this one constant is what to change for 22.
SHMEM_BIT = 21


class ProtocolFeature(enum.IntFlag):
    MQ = 1 << 0
    LOG_SHMFD = 1 << 1
    RARP = 1 << 2
    REPLY_ACK = 1 << 3
    MTU = 1 << 4
    BACKEND_REQ = 1 << 5
    CROSS_ENDIAN = 1 << 6
    CRYPTO_SESSION = 1 << 7
    PAGEFAULT = 1 << 8
    CONFIG = 1 << 9
    BACKEND_SEND_FD = 1 << 10
    HOST_NOTIFIER = 1 << 11
    INFLIGHT_SHMFD = 1 << 12
    RESET_DEVICE = 1 << 13
    INBAND_NOTIFICATIONS = 1 << 14
    CONFIGURE_MEM_SLOTS = 1 << 15
    STATUS = 1 << 16
    XEN_MMAP = 1 << 17
    SHARED_OBJECT = 1 << 18
    DEVICE_STATE = 1 << 19
    GET_VRING_BASE_INFLIGHT = 1 << 20
    #: GET_SHMEM_CONFIG and the backend's SHMEM_MAP / SHMEM_UNMAP (see SHMEM_BIT).
    SHMEM = 1 << SHMEM_BIT


# Virtio feature bits (the device's, plus vhost-user's PROTOCOL_FEATURES bit 30).
VIRTIO_F_NOTIFY_ON_EMPTY = 1 << 24
VIRTIO_RING_F_INDIRECT_DESC = 1 << 28
VIRTIO_RING_F_EVENT_IDX = 1 << 29
VHOST_USER_F_PROTOCOL_FEATURES = 1 << 30
VIRTIO_F_VERSION_1 = 1 << 32
VIRTIO_F_RING_RESET = 1 << 40
#: What almost every device offers (upstream's "std features").
STANDARD_FEATURES = (
    VIRTIO_F_VERSION_1
    | VIRTIO_F_NOTIFY_ON_EMPTY
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_RING_F_EVENT_IDX
    | VHOST_USER_F_PROTOCOL_FEATURES
)

# Bits of the u64 payload of SET_VRING_KICK/CALL/ERR.
VRING_IDX_MASK = 0xFF
VRING_NOFD_MASK = 0x100

# Virtio device status bits (SET_STATUS / GET_STATUS).
STATUS_ACKNOWLEDGE = 1
STATUS_DRIVER = 2
STATUS_DRIVER_OK = 4
STATUS_FEATURES_OK = 8
STATUS_NEEDS_RESET = 64
STATUS_FAILED = 128


@dataclass(frozen=True, slots=True)
class Header:
    request: int
    flags: int
    size: int

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) != HEADER_SIZE:
            raise ProtocolError(f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
        request, flags, size = HEADER.unpack(data)
        if flags & VERSION_MASK != HeaderFlag.VERSION:
            raise ProtocolError(f"unsupported protocol version in flags {flags:#x}")
        if size > MAX_PAYLOAD:
            raise ProtocolError(f"payload of {size} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        return cls(request, flags, size)

    def encode(self) -> bytes:
        return HEADER.pack(self.request, self.flags, self.size)

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & HeaderFlag.NEED_REPLY)


def request_name(request: int) -> str:
    try:
        return Request(request).name
    except ValueError:
        return f"UNKNOWN({request})"


class Payload:
    """Base of the fixed-layout payload codecs; subclasses set FORMAT and fields."""

    FORMAT: ClassVar[struct.Struct]

    @classmethod
    def decode(cls, data: bytes) -> Self:
        if len(data) != cls.FORMAT.size:
            raise ProtocolError(
                f"{cls.__name__} payload must be {cls.FORMAT.size} bytes, got {len(data)}"
            )
        return cls(*cls.FORMAT.unpack(data))

    def encode(self) -> bytes:
        return self.FORMAT.pack(*self._values())

    def _values(self) -> tuple[int, ...]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class U64(Payload):
    """A bare u64: feature words, SET_VRING_KICK/CALL/ERR, REPLY_ACK and status."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<Q")
    value: int

    def _values(self) -> tuple[int, ...]:
        return (self.value,)


@dataclass(frozen=True, slots=True)
class VringState(Payload):
    """SET_VRING_NUM / SET_VRING_BASE / GET_VRING_BASE / SET_VRING_ENABLE / VRING_KICK."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II")
    index: int
    num: int

    def _values(self) -> tuple[int, ...]:
        return (self.index, self.num)


@dataclass(frozen=True, slots=True)
class VringAddr(Payload):
    """SET_VRING_ADDR: ring addresses in the VMM's virtual address space."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIQQQQ")
    index: int
    flags: int
    desc: int
    used: int
    avail: int
    log: int

    def _values(self) -> tuple[int, ...]:
        return (self.index, self.flags, self.desc, self.used, self.avail, self.log)


@dataclass(frozen=True, slots=True)
class MemoryRegionDesc(Payload):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QQQQ")
    guest_phys_addr: int
    size: int
    userspace_addr: int
    mmap_offset: int

    def _values(self) -> tuple[int, ...]:
        return (self.guest_phys_addr, self.size, self.userspace_addr, self.mmap_offset)


_MEM_TABLE_HEAD = struct.Struct("<II")
_SINGLE_REGION_PAD = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class MemTable:
    """SET_MEM_TABLE: up to 8 regions, one fd each."""

    regions: tuple[MemoryRegionDesc, ...]

    @classmethod
    def decode(cls, data: bytes) -> MemTable:
        if len(data) < _MEM_TABLE_HEAD.size:
            raise ProtocolError("SET_MEM_TABLE payload too short")
        count, _padding = _MEM_TABLE_HEAD.unpack_from(data)
        if not 0 < count <= MEM_TABLE_MAX_REGIONS:
            raise ProtocolError(f"SET_MEM_TABLE with {count} regions (1..8 allowed)")
        # QEMU always sends the full 8-region array; accept exactly count or 8 entries.
        body = data[_MEM_TABLE_HEAD.size :]
        step = MemoryRegionDesc.FORMAT.size
        if len(body) not in (count * step, MEM_TABLE_MAX_REGIONS * step):
            raise ProtocolError(f"SET_MEM_TABLE payload of {len(data)} bytes for {count} regions")
        regions = tuple(
            MemoryRegionDesc.decode(body[i * step : (i + 1) * step]) for i in range(count)
        )
        return cls(regions)

    def encode(self) -> bytes:
        return _MEM_TABLE_HEAD.pack(len(self.regions), 0) + b"".join(
            r.encode() for r in self.regions
        )


@dataclass(frozen=True, slots=True)
class SingleRegion:
    """ADD_MEM_REG / REM_MEM_REG: one region after 8 bytes of padding."""

    region: MemoryRegionDesc

    @classmethod
    def decode(cls, data: bytes) -> SingleRegion:
        pad = _SINGLE_REGION_PAD.size
        if len(data) != pad + MemoryRegionDesc.FORMAT.size:
            raise ProtocolError(f"memory region payload must be 40 bytes, got {len(data)}")
        return cls(MemoryRegionDesc.decode(data[pad:]))

    def encode(self) -> bytes:
        return _SINGLE_REGION_PAD.pack(0) + self.region.encode()


_CONFIG_HEAD = struct.Struct("<III")


@dataclass(frozen=True, slots=True)
class ConfigSpace:
    """GET_CONFIG / SET_CONFIG: a window of the device's config space."""

    offset: int
    size: int
    flags: int
    data: bytes

    @classmethod
    def decode(cls, data: bytes) -> ConfigSpace:
        if len(data) < _CONFIG_HEAD.size:
            raise ProtocolError("config payload too short")
        offset, size, flags = _CONFIG_HEAD.unpack_from(data)
        body = data[_CONFIG_HEAD.size :]
        if size > MAX_CONFIG_SIZE or len(body) != size:
            raise ProtocolError(f"config payload says {size} bytes but carries {len(body)}")
        return cls(offset, size, flags, bytes(body))

    def encode(self) -> bytes:
        return _CONFIG_HEAD.pack(self.offset, self.size, self.flags) + self.data


@dataclass(frozen=True, slots=True)
class LogBase(Payload):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QQ")
    size: int
    offset: int

    def _values(self) -> tuple[int, ...]:
        return (self.size, self.offset)


@dataclass(frozen=True, slots=True)
class Inflight(Payload):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<QQHH4x")
    mmap_size: int
    mmap_offset: int
    num_queues: int
    queue_size: int

    def _values(self) -> tuple[int, ...]:
        return (self.mmap_size, self.mmap_offset, self.num_queues, self.queue_size)


@dataclass(frozen=True, slots=True)
class DeviceStateTransfer(Payload):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II")
    direction: int
    phase: int

    def _values(self) -> tuple[int, ...]:
        return (self.direction, self.phase)


#: GET_SHMEM_CONFIG's table: one size per shmid (0: no region with that id).
SHMEM_MAX_REGIONS = 256
_SHMEM_CONFIG_HEAD = struct.Struct("<II")
_SHMEM_SIZES = struct.Struct(f"<{SHMEM_MAX_REGIONS}Q")
#: SHMEM_MAP flags: the mapping is writable (else read-only).
SHMEM_MAP_WRITABLE = 1


@dataclass(frozen=True, slots=True)
class ShmemConfig:
    """GET_SHMEM_CONFIG's reply: how many regions, and each one's size by shmid."""

    sizes: tuple[int, ...]  # index = shmid; at most SHMEM_MAX_REGIONS

    @property
    def nregions(self) -> int:
        return sum(1 for size in self.sizes if size)

    @classmethod
    def decode(cls, data: bytes) -> ShmemConfig:
        if len(data) != _SHMEM_CONFIG_HEAD.size + _SHMEM_SIZES.size:
            raise ProtocolError(f"shared memory config of {len(data)} bytes")
        count, _pad = _SHMEM_CONFIG_HEAD.unpack_from(data)
        sizes = _SHMEM_SIZES.unpack_from(data, _SHMEM_CONFIG_HEAD.size)
        if count != sum(1 for size in sizes if size):
            raise ProtocolError(f"shared memory config says {count} regions")
        last = max((i for i, size in enumerate(sizes) if size), default=-1)
        return cls(tuple(sizes[: last + 1]))

    def encode(self) -> bytes:
        if len(self.sizes) > SHMEM_MAX_REGIONS:
            raise ProtocolError(f"{len(self.sizes)} shared memory ids, at most 256")
        sizes = list(self.sizes) + [0] * (SHMEM_MAX_REGIONS - len(self.sizes))
        return _SHMEM_CONFIG_HEAD.pack(self.nregions, 0) + _SHMEM_SIZES.pack(*sizes)


@dataclass(frozen=True, slots=True)
class ShmemMap(Payload):
    """SHMEM_MAP / SHMEM_UNMAP (backend → frontend): `length` bytes of the fd from
    `fd_offset` at `shm_offset` of region `shmid` (UNMAP: the same range, no fd)."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<B7xQQQQ")
    shmid: int
    fd_offset: int
    shm_offset: int
    length: int
    flags: int = 0

    def _values(self) -> tuple[int, ...]:
        return (self.shmid, self.fd_offset, self.shm_offset, self.length, self.flags)

    @property
    def writable(self) -> bool:
        return bool(self.flags & SHMEM_MAP_WRITABLE)


def vring_fd_index(value: int) -> tuple[int, bool]:
    """Split a SET_VRING_KICK/CALL/ERR word into (queue index, fd attached)."""
    if value & ~(VRING_IDX_MASK | VRING_NOFD_MASK):
        raise ProtocolError(f"reserved bits set in vring fd word {value:#x}")
    return value & VRING_IDX_MASK, not value & VRING_NOFD_MASK


class ReplyKind(enum.Enum):
    NONE = "none"  # only a REPLY_ACK, if the frontend asked for one
    ALWAYS = "always"  # the request has a reply of its own


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """How a request looks on the wire: payload size rule, fd count, reply."""

    payload: type | None  # codec class, or None for an empty payload
    fds: tuple[int, int] = (0, 0)  # allowed (min, max) attached fds
    reply: ReplyKind = ReplyKind.NONE
    needs: ProtocolFeature | None = None  # protocol feature that must be negotiated


R = Request
_VRING_FD = RequestSpec(U64, fds=(0, 1))
#: The declarative table every incoming message is checked against before dispatch.
REQUEST_SPECS: dict[Request, RequestSpec] = {
    R.GET_FEATURES: RequestSpec(None, reply=ReplyKind.ALWAYS),
    R.SET_FEATURES: RequestSpec(U64),
    R.SET_OWNER: RequestSpec(None),
    R.RESET_OWNER: RequestSpec(None),
    R.SET_MEM_TABLE: RequestSpec(MemTable, fds=(1, MEM_TABLE_MAX_REGIONS)),
    R.SET_LOG_BASE: RequestSpec(
        LogBase, fds=(0, 1), reply=ReplyKind.ALWAYS, needs=ProtocolFeature.LOG_SHMFD
    ),
    R.SET_LOG_FD: RequestSpec(None, fds=(1, 1)),
    R.SET_VRING_NUM: RequestSpec(VringState),
    R.SET_VRING_ADDR: RequestSpec(VringAddr),
    R.SET_VRING_BASE: RequestSpec(VringState),
    R.GET_VRING_BASE: RequestSpec(VringState, reply=ReplyKind.ALWAYS),
    R.SET_VRING_KICK: _VRING_FD,
    R.SET_VRING_CALL: _VRING_FD,
    R.SET_VRING_ERR: _VRING_FD,
    R.GET_PROTOCOL_FEATURES: RequestSpec(None, reply=ReplyKind.ALWAYS),
    R.SET_PROTOCOL_FEATURES: RequestSpec(U64),
    R.GET_QUEUE_NUM: RequestSpec(None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.MQ),
    R.SET_VRING_ENABLE: RequestSpec(VringState),
    R.SEND_RARP: RequestSpec(None, needs=ProtocolFeature.RARP),
    R.NET_SET_MTU: RequestSpec(U64, needs=ProtocolFeature.MTU),
    R.SET_BACKEND_REQ_FD: RequestSpec(None, fds=(1, 1), needs=ProtocolFeature.BACKEND_REQ),
    R.IOTLB_MSG: RequestSpec(None),
    R.SET_VRING_ENDIAN: RequestSpec(VringState, needs=ProtocolFeature.CROSS_ENDIAN),
    R.GET_CONFIG: RequestSpec(ConfigSpace, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.CONFIG),
    R.SET_CONFIG: RequestSpec(ConfigSpace, needs=ProtocolFeature.CONFIG),
    R.CREATE_CRYPTO_SESSION: RequestSpec(
        None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.CRYPTO_SESSION
    ),
    R.CLOSE_CRYPTO_SESSION: RequestSpec(None, needs=ProtocolFeature.CRYPTO_SESSION),
    R.POSTCOPY_ADVISE: RequestSpec(None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.PAGEFAULT),
    R.POSTCOPY_LISTEN: RequestSpec(None, needs=ProtocolFeature.PAGEFAULT),
    R.POSTCOPY_END: RequestSpec(None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.PAGEFAULT),
    R.GET_INFLIGHT_FD: RequestSpec(
        Inflight, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.INFLIGHT_SHMFD
    ),
    R.SET_INFLIGHT_FD: RequestSpec(Inflight, fds=(1, 1), needs=ProtocolFeature.INFLIGHT_SHMFD),
    R.GPU_SET_SOCKET: RequestSpec(None, fds=(1, 1)),
    R.RESET_DEVICE: RequestSpec(None, needs=ProtocolFeature.RESET_DEVICE),
    R.VRING_KICK: RequestSpec(VringState, needs=ProtocolFeature.INBAND_NOTIFICATIONS),
    R.GET_MAX_MEM_SLOTS: RequestSpec(
        None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.CONFIGURE_MEM_SLOTS
    ),
    R.ADD_MEM_REG: RequestSpec(SingleRegion, fds=(1, 1), needs=ProtocolFeature.CONFIGURE_MEM_SLOTS),
    R.REM_MEM_REG: RequestSpec(SingleRegion, fds=(0, 1), needs=ProtocolFeature.CONFIGURE_MEM_SLOTS),
    R.SET_STATUS: RequestSpec(U64, needs=ProtocolFeature.STATUS),
    R.GET_STATUS: RequestSpec(None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.STATUS),
    R.GET_SHARED_OBJECT: RequestSpec(
        None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.SHARED_OBJECT
    ),
    R.SET_DEVICE_STATE_FD: RequestSpec(
        DeviceStateTransfer, fds=(1, 1), reply=ReplyKind.ALWAYS, needs=ProtocolFeature.DEVICE_STATE
    ),
    R.CHECK_DEVICE_STATE: RequestSpec(
        None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.DEVICE_STATE
    ),
    R.GET_SHMEM_CONFIG: RequestSpec(None, reply=ReplyKind.ALWAYS, needs=ProtocolFeature.SHMEM),
}


def decode_payload(request: Request, data: bytes) -> object:
    """Decode `data` with the codec of `request`; empty-payload requests give None.

    Requests without a payload tolerate stray bytes (QEMU sends an 8-byte zero word
    with some of them), since ignoring them is harmless.
    """
    codec = REQUEST_SPECS[request].payload
    if codec is None:
        return None
    decoded: object = codec.decode(data)  # type: ignore[attr-defined]
    return decoded


def check_fd_count(request: Request, count: int) -> None:
    low, high = REQUEST_SPECS[request].fds
    if not low <= count <= high:
        raise ProtocolError(f"{request.name} carries {count} fds; {low}..{high} expected")
