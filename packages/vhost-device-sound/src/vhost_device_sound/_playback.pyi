"""The guest's playback (tx) buffers an output stream holds, kept and returned in C:
one call per wake-up of a playing stream, no Python object per buffer."""

from collections.abc import Callable

from vhost_user_core import DescriptorChain, Vring

from ._pcmring import PcmRing

#: struct virtio_snd_pcm_xfer and virtio_snd_pcm_status sizes, as the C code has them.
XFER_SIZE: int
STATUS_SIZE: int

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
    def complete_played(self, vring: Vring | None, ring: PcmRing) -> None:
        """Return the buffers whose last byte the host consumed (status OK, latency the
        ring's fill); one interrupt, if the guest asked for it. A ring that is not
        ready (stopped) takes nothing back: those buffers are dropped."""
    def step(
        self,
        vring: Vring | None,
        ring: PcmRing,
        route: Callable[[DescriptorChain], None],
        limit: int,
        take: bool,
        discard: int = 0,
    ) -> None:
        """One wake-up of a playing stream: reset the ring's notification; if `take`,
        pop what the guest posted, holding this stream's buffers while at most `limit`
        bytes are held and handing any other to `route`; drop `discard` bytes from the
        ring (played by the device's clock); return what was played; refill the ring."""
    def flush(self, vring: Vring | None, latency: int) -> None:
        """Return every held buffer now, played or not."""
    def clear(self) -> None:
        """Forget every held buffer (the guest's rings are gone)."""
