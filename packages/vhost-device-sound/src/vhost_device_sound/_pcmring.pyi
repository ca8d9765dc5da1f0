"""A byte ring between the device and a host audio thread, gated by a Switch.

The realtime entry points are C functions (see _pcmring.pxd) for Cython backends; this
is the Python side used by the worker and by host threads written in Python.
"""

from typing_extensions import Buffer

class Switch:
    """One direction's enable flag, readable by C code without the GIL."""

    def __init__(self, on: bool = False) -> None: ...
    enabled: bool

class PcmRing:
    def __init__(self, capacity: int, switch: Switch) -> None: ...
    @property
    def capacity(self) -> int: ...
    @property
    def switch(self) -> Switch: ...
    notify_every: int
    """Bytes the host side moves between notifications of the worker (0: every call);
    it also notifies when a playback ring could not feed two more calls like the
    last one, or a capture ring is full."""
    @property
    def notify_fd(self) -> int:
        """An eventfd, readable after the host side moved data."""
    @property
    def read_pos(self) -> int:
        """Bytes consumed since the ring was made."""
    @property
    def write_pos(self) -> int:
        """Bytes produced since the ring was made."""
    @property
    def fill(self) -> int:
        """Bytes queued and not yet consumed."""
    @property
    def room(self) -> int: ...
    def write(self, data: Buffer) -> int:
        """Producer (ungated): queue what fits; returns the byte count."""
    def read_into(self, buffer: Buffer) -> int:
        """Consumer (ungated): move up to len(buffer) bytes out."""
    def discard(self, n: int) -> int:
        """Consumer: drop up to n queued bytes."""
    def clear(self) -> int: ...
    def consume_into(self, buffer: Buffer) -> int:
        """Host consumer in Python: gated by the switch; 0 while it is off."""
    def produce(self, data: Buffer) -> int:
        """Host producer in Python: gated by the switch; nothing queued while it is off."""
    def drain_notifications(self) -> int: ...

def scale_samples(buffer: Buffer, fmt: int, gain: float) -> None:
    """Multiply every little-endian sample of `buffer` in place by `gain` (0..1), for
    backends without a mixer. Formats (VIRTIO_SND_PCM_FMT_*): U8, S16, S24, S32, FLOAT."""
