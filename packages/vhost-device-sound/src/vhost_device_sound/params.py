"""PCM stream parameters: what a backend can do, and what the guest chose."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from .protocol import SAMPLE_BYTES, Chmap, Direction, Format, Rate, bitmap

#: Upstream's topology: stream 0 plays, stream 1 captures.
STREAM_DIRECTIONS = (Direction.OUTPUT, Direction.INPUT)
#: Short periods are moved several at a time, at most this often (see periods_per_wakeup).
MIN_WAKEUP_SECONDS = 0.02

#: Channel positions for 1..8 channels (ALSA's usual layouts), used for both the chmap
#: the guest is told about and the positions handed to the backend.
DEFAULT_POSITIONS: dict[int, tuple[Chmap, ...]] = {
    1: (Chmap.MONO,),
    2: (Chmap.FL, Chmap.FR),
    3: (Chmap.FL, Chmap.FR, Chmap.LFE),
    4: (Chmap.FL, Chmap.FR, Chmap.RL, Chmap.RR),
    5: (Chmap.FL, Chmap.FR, Chmap.RL, Chmap.RR, Chmap.FC),
    6: (Chmap.FL, Chmap.FR, Chmap.RL, Chmap.RR, Chmap.FC, Chmap.LFE),
    7: (Chmap.FL, Chmap.FR, Chmap.RL, Chmap.RR, Chmap.FC, Chmap.LFE, Chmap.RC),
    8: (Chmap.FL, Chmap.FR, Chmap.RL, Chmap.RR, Chmap.FC, Chmap.LFE, Chmap.SL, Chmap.SR),
}


@dataclass(frozen=True)
class Capabilities:
    """What a backend can play or record: answered in PCM_INFO, checked at SET_PARAMS."""

    formats: frozenset[Format]
    rates: frozenset[Rate]
    channels_min: int = 1
    channels_max: int = 6

    @property
    def format_mask(self) -> int:
        return bitmap(self.formats)

    @property
    def rate_mask(self) -> int:
        return bitmap(self.rates)


#: The baseline every backend offers: U8/S16/S24/S32, 8–48 kHz, 1–6 channels.
BASE_FORMATS = frozenset({Format.U8, Format.S16, Format.S24, Format.S32})
BASE_RATES = frozenset(
    {
        Rate.R8000,
        Rate.R11025,
        Rate.R16000,
        Rate.R22050,
        Rate.R32000,
        Rate.R44100,
        Rate.R48000,
    }
)
HIGH_RATES = frozenset({Rate.R64000, Rate.R88200, Rate.R96000, Rate.R176400, Rate.R192000})
#: Every rate of the spec, 5512 to 384000 Hz (Linux 6.12 maps all but 384000).
ALL_RATES = frozenset(Rate)
BASE_CAPABILITIES = Capabilities(BASE_FORMATS, BASE_RATES)
#: A device with no host behind it (the null backend) has no host limits either.
UNLIMITED_CAPABILITIES = Capabilities(BASE_FORMATS, ALL_RATES, 1, 8)


@dataclass(frozen=True)
class PcmParams:
    """A stream's parameters after PCM_SET_PARAMS."""

    format: Format
    rate: Rate
    channels: int
    buffer_bytes: int
    period_bytes: int

    @cached_property
    def frame_bytes(self) -> int:
        return SAMPLE_BYTES[self.format] * self.channels

    @cached_property
    def bytes_per_second(self) -> int:
        return self.frame_bytes * self.rate.hz

    @cached_property
    def period_seconds(self) -> float:
        """Read every period by the pacing timer: computed once."""
        return self.period_bytes / self.bytes_per_second

    @property
    def period_frames(self) -> int:
        return self.period_bytes // self.frame_bytes

    @cached_property
    def periods_per_wakeup(self) -> int:
        """Periods to move per wake-up of the device (its pacing timer) or of the host
        (PipeWire's quantum): enough to wake at most every MIN_WAKEUP_SECONDS, since a
        wake-up costs more than the work it does, but never more than half the guest's
        buffer, so the guest's hardware pointer cannot catch up with what it has
        written (an xrun in ALSA)."""
        in_buffer = max(self.buffer_bytes // self.period_bytes, 1)
        wanted = math.ceil(MIN_WAKEUP_SECONDS / self.period_seconds - 1e-9)
        return max(1, min(in_buffer // 2, wanted))

    @property
    def wakeup_frames(self) -> int:
        return self.period_frames * self.periods_per_wakeup

    @property
    def positions(self) -> tuple[Chmap, ...]:
        return DEFAULT_POSITIONS[self.channels]


#: Upstream's defaults until the guest sets its own: mono S16 at 44.1 kHz.
DEFAULT_PARAMS = PcmParams(Format.S16, Rate.R44100, 1, 8192, 4096)
