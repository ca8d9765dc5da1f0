"""The spidev ioctls that the `spidev` package cannot make (linux/spi/spidev.h).

spidev's `xfer*` send one transfer per SPI_IOC_MESSAGE with tx/rx_nbits forced to 0,
its `mode` is the 8-bit SPI_IOC_WR_MODE (no dual/quad/octal bits) and its
`bits_per_word` refuses 1..7. A guest's batch is several transfers with their own
speed, word size, widths and cs_change in one message, so that message, the 32-bit
mode and small word sizes are marshalled here. Packing is pure (tested against the
kernel's own header); the three `ioctl` calls are the only I/O.
"""

from __future__ import annotations

import ctypes
import fcntl
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

_IOC_WRITE, _IOC_READ = 1, 2
SPI_IOC_MAGIC = ord("k")
TRANSFER = struct.Struct("=QQIIHBBBBBx")  # struct spi_ioc_transfer, 32 bytes

# linux/spi/spi.h (uapi) mode bits, as SPI_IOC_RD/WR_MODE32 carry them
SPI_CPHA = 0x1
SPI_CPOL = 0x2
SPI_CS_HIGH = 0x4
SPI_LSB_FIRST = 0x8
SPI_LOOP = 0x20
SPI_TX_DUAL = 0x100
SPI_TX_QUAD = 0x200
SPI_RX_DUAL = 0x400
SPI_RX_QUAD = 0x800
SPI_TX_OCTAL = 0x2000
SPI_RX_OCTAL = 0x4000
USER_MODE_BITS = SPI_CPHA | SPI_CPOL | SPI_CS_HIGH | SPI_LSB_FIRST | SPI_LOOP
WIDTH_BITS = SPI_TX_DUAL | SPI_TX_QUAD | SPI_TX_OCTAL | SPI_RX_DUAL | SPI_RX_QUAD | SPI_RX_OCTAL
TX_WIDTH = {2: SPI_TX_DUAL, 4: SPI_TX_QUAD, 8: SPI_TX_OCTAL}
RX_WIDTH = {2: SPI_RX_DUAL, 4: SPI_RX_QUAD, 8: SPI_RX_OCTAL}
MAX_MESSAGE = (1 << 14) // TRANSFER.size - 1  # SPI_MSGSIZE(N) must stay below 1 << 14


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | SPI_IOC_MAGIC << 8 | nr


SPI_IOC_RD_BITS_PER_WORD = _ioc(_IOC_READ, 3, 1)
SPI_IOC_WR_BITS_PER_WORD = _ioc(_IOC_WRITE, 3, 1)
SPI_IOC_RD_MAX_SPEED_HZ = _ioc(_IOC_READ, 4, 4)  # (for tests: spidev's getter is a cached copy)
SPI_IOC_RD_MODE32 = _ioc(_IOC_READ, 5, 4)
SPI_IOC_WR_MODE32 = _ioc(_IOC_WRITE, 5, 4)


def spi_ioc_message(count: int) -> int:
    """SPI_IOC_MESSAGE(count)."""
    if not 1 <= count <= MAX_MESSAGE:
        raise ValueError(f"an SPI message has 1..{MAX_MESSAGE} transfers, not {count}")
    return _ioc(_IOC_WRITE, 0, count * TRANSFER.size)


@dataclass(frozen=True)
class IocTransfer:
    """One struct spi_ioc_transfer; addresses are process addresses (0: no buffer)."""

    tx_buf: int
    rx_buf: int
    length: int
    speed_hz: int = 0
    delay_usecs: int = 0
    bits_per_word: int = 0
    cs_change: int = 0
    tx_nbits: int = 0
    rx_nbits: int = 0
    word_delay_usecs: int = 0

    def pack(self) -> bytes:
        return TRANSFER.pack(
            self.tx_buf,
            self.rx_buf,
            self.length,
            self.speed_hz,
            self.delay_usecs,
            self.bits_per_word,
            self.cs_change,
            self.tx_nbits,
            self.rx_nbits,
            self.word_delay_usecs,
        )


def pack_message(transfers: Sequence[IocTransfer]) -> bytearray:
    return bytearray(b"".join(t.pack() for t in transfers))


def message(fd: int, transfers: Sequence[IocTransfer]) -> int:
    """SPI_IOC_MESSAGE(n) on `fd`; the kernel fills the rx buffers. OSError on failure."""
    done: int = fcntl.ioctl(fd, spi_ioc_message(len(transfers)), pack_message(transfers), True)
    return done


def read_mode32(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, SPI_IOC_RD_MODE32, buf, True)
    return int.from_bytes(buf, sys.byteorder)


def write_mode32(fd: int, mode: int) -> None:
    fcntl.ioctl(fd, SPI_IOC_WR_MODE32, mode.to_bytes(4, sys.byteorder))


def write_bits_per_word(fd: int, bits: int) -> None:
    fcntl.ioctl(fd, SPI_IOC_WR_BITS_PER_WORD, bytes([bits]))


def address(buffer: ctypes.Array[ctypes.c_char] | None) -> int:
    return 0 if buffer is None else ctypes.addressof(buffer)
