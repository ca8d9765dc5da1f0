"""The guest's playback (tx) buffers an output stream holds, kept and returned in C:
one call per wake-up of a playing stream, no Python object per buffer."""

from collections.abc import Callable

from vhost_user_core import DescriptorChain, Vring

from ._pcmring import PcmRing

#: struct virtio_snd_pcm_xfer and virtio_snd_pcm_status sizes, as the C code has them.
XFER_SIZE: int
STATUS_SIZE: int
#: Seconds before its deadline at which a buffer counts as due.
DUE_SLACK: float

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
        the ring's fill); one interrupt, if the guest asked for it. A ring that
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
