"""The guest's playback (tx) buffers an output stream holds, kept and returned in C:
one call per wake-up of a playing stream, no Python object per buffer; or, once
attached to a host that runs cycles (PipeWire) or to the period clock, moved in those
cycles without the GIL and without waking the worker."""

from collections.abc import Callable
from types import TracebackType

from vhost_user_core import DescriptorChain, Vring

from ._pcmring import PcmRing

#: struct virtio_snd_pcm_xfer and virtio_snd_pcm_status sizes, as the C code has them.
XFER_SIZE: int
STATUS_SIZE: int
#: Seconds before its deadline at which a buffer counts as due.
DUE_SLACK: float
#: The most a host's cycle returns a buffer before its deadline, in seconds.
MAX_LEAD: float
#: How far behind its grid a period clock may fall and still catch up, in seconds.
MAX_CLOCK_DEBT: float

class DeviceLock:
    """The session lock of a device with a realtime path: reentrant like
    threading.RLock, and a pthread mutex a host thread tries in C. `refresh`, if set,
    runs before the outermost release, lock still held."""

    refresh: Callable[[], None] | None
    def __init__(self) -> None: ...
    def acquire(self, blocking: bool = True) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> DeviceLock: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

class PlaybackBuffers:
    """A FIFO of held tx buffers for stream `stream_id`."""

    def __init__(self, stream_id: int) -> None: ...
    def __len__(self) -> int: ...
    @property
    def stream_id(self) -> int: ...
    @property
    def held_bytes(self) -> int:
        """Sample bytes held (played or not), for the buffer_bytes limit."""
    def append(self, chain: DescriptorChain) -> None:
        """Hold a buffer the device has checked (header, status room, stream, size);
        ValueError if it has no room for a header or status."""
    def feed(self, ring: PcmRing) -> None:
        """Copy held samples into the ring, in order, while it has room."""
    def start_clock(self, now: float, bytes_per_second: float) -> None:
        """START: the stream plays from `now` (time.monotonic()); queued buffers get
        their deadlines in order, later ones as they are queued."""
    def stop_clock(self) -> None:
        """STOP: nothing is due until the next START."""
    def complete_played(self, vring: Vring | None, ring: PcmRing) -> float:
        """Return the buffers in the ring whose deadline has passed (status OK, latency
        0: their deadlines have passed); one interrupt, if the guest asked for it. A ring that
        is not ready (stopped) takes nothing back: those buffers are dropped. Returns
        the next deadline (time.monotonic()) to wake up for, 0 if none."""
    def step(
        self,
        vring: Vring | None,
        ring: PcmRing,
        route: Callable[[DescriptorChain], None],
        limit: int,
        take: bool,
        discard: int = 0,
    ) -> float:
        """One wake-up of a playing stream: reset the ring's notification; if `take`,
        pop what the guest posted, holding this stream's buffers while at most `limit`
        bytes are held and handing any other to `route`; drop `discard` bytes from the
        ring (played by the device's period timer: what it played goes back at once);
        return what was played and is due; refill the ring. Returns the next deadline
        to wake up for, 0 if none."""
    def flush(self, vring: Vring | None, latency: int) -> None:
        """Return every held buffer now, played or not."""
    def clear(self) -> None:
        """Forget every held buffer (the guest's rings are gone)."""
    def attach_host(self, ring: PcmRing, lock: DeviceLock, pool_size: int) -> None:
        """`ring`'s host runs cycles (or the period clock will): this stream's buffers
        move there while `rt_configure` says so, at most `pool_size` taken there at
        once. Call before the host stream exists, holding `lock`."""
    def detach_host(self) -> None:
        """The ring is being dropped: its cycles no longer reach this stream."""
    def rt_configure(self, armed: bool, vring: Vring | None = None, limit: int = 0) -> None:
        """Arm (on `vring`, the tx ring as it is now, at most `limit` bytes held) or
        disarm the cycles' path; lock held."""
    @property
    def rt_armed(self) -> bool:
        """Whether host or clock cycles take, feed and return this stream's buffers."""
    @property
    def rt_cycles(self) -> int:
        """Cycles that moved this stream's buffers (since it was made)."""
    @property
    def rt_busy(self) -> int:
        """Cycles that found the lock taken and left their work to the worker."""
    @property
    def clock_behind(self) -> int:
        """Period clock wake-ups that found it behind its grid (since its start)."""
    @property
    def clock_starved(self) -> int:
        """Bytes the period clock played with none in the ring (since its start)."""
    def clock_start(self, anchor: float, interval: float, nbytes: int) -> None:
        """Run the period clock's thread: every `interval` s from `anchor`, play
        `nbytes` of the ring into nothing and return the buffers they held."""
    def clock_stop(self) -> None:
        """Stop the period clock and wait for its thread."""
    @property
    def period_clock_running(self) -> bool: ...
