"""virtio-spi on the wire (VIRTIO 1.3 "SPI Controller Device", device ID 45): the config
space, the transfer head and result codes, and the checks a head must pass against the
config. Pure: bytes in, values out, no I/O."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

DEVICE_ID = 45
HEAD_SIZE = 32  # struct spi_transfer_head
CONFIG_SIZE = 32  # struct virtio_spi_config
RESULT_SIZE = 1  # struct spi_transfer_result

_CONFIG = struct.Struct("<4B7I")
_HEAD = struct.Struct("<5B3x6I")


class Result(enum.IntEnum):
    TRANS_OK = 0
    PARAM_ERR = 1
    TRANS_ERR = 2


class Mode(enum.IntFlag):
    """`mode` of a transfer head."""

    CPHA = 1 << 0
    CPOL = 1 << 1
    CS_HIGH = 1 << 2
    LSB_FIRST = 1 << 3
    LOOP = 1 << 4


class ModeFunc(enum.IntFlag):
    """`mode_func_supported` of the config space."""

    CPHA_0 = 1 << 0
    CPHA_1 = 1 << 1
    CPOL_0 = 1 << 2
    CPOL_1 = 1 << 3
    CS_HIGH = 1 << 4
    LSB_FIRST = 1 << 5
    LOOPBACK = 1 << 6


class Width(enum.IntFlag):
    """`tx_nbits_supported` / `rx_nbits_supported` (single is always there)."""

    DUAL = 1 << 0
    QUAD = 1 << 1
    OCTAL = 1 << 2


#: a head's tx_nbits / rx_nbits value -> the Width bit it needs (None: single, always).
NBITS: dict[int, Width | None] = {0: None, 1: None, 2: Width.DUAL, 4: Width.QUAD, 8: Width.OCTAL}


@dataclass(frozen=True)
class SpiConfig:
    """struct virtio_spi_config: what the controller can do, read by the driver once."""

    cs_max_number: int = 1
    cs_change_supported: bool = True
    tx_nbits_supported: Width = Width(0)
    rx_nbits_supported: Width = Width(0)
    bits_per_word_mask: int = 0  # bit n: bits_per_word n+1; 0: any
    mode_func_supported: ModeFunc = ModeFunc.CPHA_0 | ModeFunc.CPOL_0
    max_freq_hz: int = 0  # 0: no limit
    max_word_delay_ns: int = 0  # the four delays: 0 means unsupported
    max_cs_setup_ns: int = 0
    max_cs_hold_ns: int = 0
    max_cs_inactive_ns: int = 0

    def encode(self) -> bytes:
        return _CONFIG.pack(
            self.cs_max_number,
            int(self.cs_change_supported),
            self.tx_nbits_supported,
            self.rx_nbits_supported,
            self.bits_per_word_mask,
            self.mode_func_supported,
            self.max_freq_hz,
            self.max_word_delay_ns,
            self.max_cs_setup_ns,
            self.max_cs_hold_ns,
            self.max_cs_inactive_ns,
        )

    def supports_bits_per_word(self, bits: int) -> bool:
        return 1 <= bits <= 32 and (
            not self.bits_per_word_mask or bool(self.bits_per_word_mask >> (bits - 1) & 1)
        )


@dataclass(frozen=True)
class TransferHead:
    """struct spi_transfer_head, the first 32 device-readable bytes of a request."""

    chip_select_id: int
    bits_per_word: int
    cs_change: int
    tx_nbits: int
    rx_nbits: int
    mode: int
    freq: int
    word_delay_ns: int = 0
    cs_setup_ns: int = 0
    cs_delay_hold_ns: int = 0
    cs_change_delay_inactive_ns: int = 0

    @classmethod
    def decode(cls, data: bytes) -> TransferHead:
        """`data` is exactly HEAD_SIZE bytes (the reserved bytes are ignored)."""
        return cls(*_HEAD.unpack(data))

    def encode(self) -> bytes:
        return _HEAD.pack(
            self.chip_select_id,
            self.bits_per_word,
            self.cs_change,
            self.tx_nbits,
            self.rx_nbits,
            self.mode,
            self.freq,
            self.word_delay_ns,
            self.cs_setup_ns,
            self.cs_delay_hold_ns,
            self.cs_change_delay_inactive_ns,
        )


def _mode_problem(mode: int, supported: ModeFunc) -> str | None:
    if mode & ~int(Mode.CPHA | Mode.CPOL | Mode.CS_HIGH | Mode.LSB_FIRST | Mode.LOOP):
        return f"mode {mode:#x} has undefined bits"
    wants = [
        (ModeFunc.CPHA_1 if mode & Mode.CPHA else ModeFunc.CPHA_0, "CPHA"),
        (ModeFunc.CPOL_1 if mode & Mode.CPOL else ModeFunc.CPOL_0, "CPOL"),
    ]
    if mode & Mode.CS_HIGH:
        wants.append((ModeFunc.CS_HIGH, "CS_HIGH"))
    if mode & Mode.LSB_FIRST:
        wants.append((ModeFunc.LSB_FIRST, "LSB_FIRST"))
    if mode & Mode.LOOP:
        wants.append((ModeFunc.LOOPBACK, "LOOP"))
    for bit, name in wants:
        if not supported & bit:
            return f"mode {mode:#x}: {name} setting not supported"
    return None


def head_problem(head: TransferHead, config: SpiConfig, tx_len: int, rx_len: int) -> str | None:
    """Why this request is a PARAM_ERR (None if it is a valid transfer for `config`).

    tx_len / rx_len are the request's tx and rx buffer sizes (0: that direction absent:
    a half-duplex transfer)."""
    if tx_len == 0 and rx_len == 0:
        return "neither a tx nor an rx buffer"
    if tx_len and rx_len and tx_len != rx_len:
        return f"full-duplex with tx {tx_len} and rx {rx_len} bytes"
    if head.chip_select_id >= config.cs_max_number:
        return f"chip select {head.chip_select_id} of {config.cs_max_number}"
    if not config.supports_bits_per_word(head.bits_per_word):
        return f"bits_per_word {head.bits_per_word} not supported"
    word = 1 if head.bits_per_word <= 8 else 2 if head.bits_per_word <= 16 else 4
    if (tx_len or rx_len) % word:
        return f"{tx_len or rx_len} bytes is not whole {head.bits_per_word}-bit words"
    if head.cs_change > 1 or (head.cs_change and not config.cs_change_supported):
        return f"cs_change {head.cs_change}"
    for name, nbits, supported, used in (
        ("tx", head.tx_nbits, config.tx_nbits_supported, tx_len),
        ("rx", head.rx_nbits, config.rx_nbits_supported, rx_len),
    ):
        if nbits not in NBITS:
            return f"{name}_nbits {nbits} is not 0, 1, 2, 4 or 8"
        width = NBITS[nbits]
        if used and width is not None and not supported & width:
            return f"{name}_nbits {nbits} not supported"
    problem = _mode_problem(head.mode, config.mode_func_supported)
    if problem:
        return problem
    if config.max_freq_hz and head.freq > config.max_freq_hz:
        return f"freq {head.freq} Hz over the maximum {config.max_freq_hz} Hz"
    for name, value, limit in (
        ("word_delay_ns", head.word_delay_ns, config.max_word_delay_ns),
        ("cs_setup_ns", head.cs_setup_ns, config.max_cs_setup_ns),
        ("cs_delay_hold_ns", head.cs_delay_hold_ns, config.max_cs_hold_ns),
        (
            "cs_change_delay_inactive_ns",
            head.cs_change_delay_inactive_ns,
            config.max_cs_inactive_ns,
        ),
    ):
        if value > limit:
            return f"{name} {value} over the maximum {limit}"
    return None
