"""The SPI controller behind a small interface: the real one (a Linux spidev, through
the `spidev` package and spidev_ioctl) and the shipped double (`-l sim`, MOSI looped to
MISO), so tests and users can run without SPI hardware."""

from __future__ import annotations

import ctypes
import errno
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import spidev  # type: ignore[import-not-found]  # a C extension without stubs

from . import spidev_ioctl as ioc
from .errors import ControllerError, TransferError
from .protocol import Mode, ModeFunc, SpiConfig, Width

log = logging.getLogger(__name__)

SIM = "sim"
#: spi_ioc_transfer.delay_usecs is 16 bits of µs, run by the kernel's SPI core itself
#: (spi_transfer_delay_exec) whatever the controller: the hold delay we can offer.
MAX_CS_HOLD_NS = 0xFFFF * 1000
BUFSIZ = Path("/sys/module/spidev/parameters/bufsiz")


@dataclass(frozen=True)
class Transfer:
    """One checked transfer of a message: `tx` None for a half-duplex read, `rx_len` 0
    for a half-duplex write; the fields are the guest's transfer head's."""

    tx: bytes | None
    rx_len: int
    speed_hz: int
    bits_per_word: int
    cs_change: int
    tx_nbits: int
    rx_nbits: int
    delay_usecs: int = 0  # after the transfer, before CS changes (the head's cs_delay_hold_ns)

    @property
    def length(self) -> int:
        return self.rx_len or (len(self.tx) if self.tx is not None else 0)


class Controller(Protocol):
    """An SPI controller with one chip select; shared by every connection's worker."""

    @property
    def config(self) -> SpiConfig:
        """What it supports, as the guest reads it from the config space."""

    @property
    def message_limit(self) -> int:
        """Bytes a message may carry in each direction."""

    def transfer(self, mode: int, transfers: Sequence[Transfer]) -> list[bytes]:
        """Run `transfers` as one SPI message in virtio `mode`; the bytes each read
        (b"" for a half-duplex write). TransferError if the controller fails it."""

    def close(self) -> None: ...


class SimController:
    """The double: MOSI wired to MISO, so each transfer reads what it clocked out, and a
    half-duplex read (nothing clocked out: the idle line, zeros) reads zeros. Its config
    is fixed and documented (README "The simulated controller")."""

    config = SpiConfig(
        cs_max_number=1,
        cs_change_supported=True,
        tx_nbits_supported=Width.DUAL | Width.QUAD,
        rx_nbits_supported=Width.DUAL | Width.QUAD,
        bits_per_word_mask=(1 << 7) | (1 << 15) | (1 << 31),  # 8, 16 and 32 bits
        mode_func_supported=ModeFunc(0x7F),  # every mode bit, loopback too
        max_freq_hz=50_000_000,
        max_cs_hold_ns=MAX_CS_HOLD_NS,
    )
    message_limit = 1 << 20

    def __init__(self, keep: int = 64) -> None:
        # the newest messages as (virtio mode, transfers), for tests and users to read
        self.history: deque[tuple[int, tuple[Transfer, ...]]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def transfer(self, mode: int, transfers: Sequence[Transfer]) -> list[bytes]:
        with self._lock:
            self.history.append((mode, tuple(transfers)))
        return [t.tx if t.rx_len and t.tx is not None else bytes(t.rx_len) for t in transfers]

    def close(self) -> None:
        pass


def virtio_to_spidev_mode(mode: int) -> int:
    """A virtio head's mode as linux/spi/spi.h bits (LOOP moves from bit 4 to bit 5)."""
    bits = mode & (Mode.CPHA | Mode.CPOL | Mode.CS_HIGH | Mode.LSB_FIRST)
    return int(bits) | (ioc.SPI_LOOP if mode & Mode.LOOP else 0)


def width_bits(transfer: Transfer) -> int:
    """The spidev mode bits a transfer's widths need (the kernel checks them per device)."""
    bits = 0
    if transfer.tx is not None:
        bits |= ioc.TX_WIDTH.get(transfer.tx_nbits, 0)
    if transfer.rx_len:
        bits |= ioc.RX_WIDTH.get(transfer.rx_nbits, 0)
    return bits


class SpidevController:
    """A Linux /dev/spidevX.Y. Its config is probed at start (each mode bit, width and
    word size tried and read back) and its original mode, word size and speed are put
    back after probing and again at close."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dev = spidev.SpiDev()
        try:
            self._dev.open_path(path)  # reads the mode, word size and speed: spidev ioctls
            self._fd = self._dev.fileno()
            self._mode32 = ioc.read_mode32(self._fd)
            self._bits = self._dev.bits_per_word
            self._speed = self._dev.max_speed_hz
        except OSError as exc:
            self._dev.close()
            if exc.errno == errno.ENOTTY:
                raise ControllerError(f"{path}: not a spidev device", path) from exc
            raise ControllerError(f"cannot open {path}: {exc.strerror}", path) from exc
        try:
            self.config = self._probe()
        finally:
            self._restore()
        self.message_limit = _bufsiz()
        self._current_mode32 = self._mode32
        log.info("%s: %s", path, self.config)

    def _accepts_mode(self, bits: int) -> bool:
        try:
            ioc.write_mode32(
                self._fd, (self._mode32 & ~(ioc.USER_MODE_BITS | ioc.WIDTH_BITS)) | bits
            )
            return ioc.read_mode32(self._fd) & bits == bits  # the kernel drops unsupported widths
        except OSError:
            return False

    def _set_bits(self, bits: int) -> None:
        if 8 <= bits <= 32:
            self._dev.bits_per_word = bits
        else:  # the spidev package refuses 1..7 (and a kernel default of 0)
            ioc.write_bits_per_word(self._fd, bits)

    def _accepts_bits(self, bits: int) -> bool:
        try:
            self._set_bits(bits)
            return True
        except OSError:
            return False

    def _probe(self) -> SpiConfig:
        funcs = ModeFunc(0)
        for bit, func in (
            (0, ModeFunc.CPHA_0 | ModeFunc.CPOL_0),
            (ioc.SPI_CPHA, ModeFunc.CPHA_1),
            (ioc.SPI_CPOL, ModeFunc.CPOL_1),
            (ioc.SPI_CS_HIGH, ModeFunc.CS_HIGH),
            (ioc.SPI_LSB_FIRST, ModeFunc.LSB_FIRST),
            (ioc.SPI_LOOP, ModeFunc.LOOPBACK),
        ):
            if self._accepts_mode(bit):
                funcs |= func
        tx, rx = Width(0), Width(0)
        for width, nbits in ((Width.DUAL, 2), (Width.QUAD, 4), (Width.OCTAL, 8)):
            if self._accepts_mode(ioc.TX_WIDTH[nbits]):
                tx |= width
            if self._accepts_mode(ioc.RX_WIDTH[nbits]):
                rx |= width
        mask = sum(1 << (bits - 1) for bits in range(1, 33) if self._accepts_bits(bits))
        return SpiConfig(
            cs_max_number=1,
            cs_change_supported=True,
            tx_nbits_supported=tx,
            rx_nbits_supported=rx,
            bits_per_word_mask=mask,
            mode_func_supported=funcs,
            max_freq_hz=self._speed,
            max_cs_hold_ns=MAX_CS_HOLD_NS,
        )

    def _restore(self) -> None:
        try:
            ioc.write_mode32(self._fd, self._mode32)
            self._set_bits(self._bits)
            self._dev.max_speed_hz = self._speed
        except OSError as exc:
            log.warning("%s: cannot restore its settings: %s", self.path, exc.strerror)

    def transfer(self, mode: int, transfers: Sequence[Transfer]) -> list[bytes]:
        wanted = (self._mode32 & ~ioc.USER_MODE_BITS & ~ioc.WIDTH_BITS) | virtio_to_spidev_mode(
            mode
        )
        for t in transfers:
            wanted |= width_bits(t)
        buffers: list[
            tuple[ctypes.Array[ctypes.c_char] | None, ctypes.Array[ctypes.c_char] | None]
        ] = [
            (
                ctypes.create_string_buffer(t.tx, len(t.tx)) if t.tx is not None else None,
                ctypes.create_string_buffer(t.rx_len) if t.rx_len else None,
            )
            for t in transfers
        ]
        message = [
            ioc.IocTransfer(
                tx_buf=ioc.address(tx),
                rx_buf=ioc.address(rx),
                length=t.length,
                speed_hz=t.speed_hz,
                delay_usecs=t.delay_usecs,
                bits_per_word=t.bits_per_word,
                cs_change=t.cs_change,
                tx_nbits=t.tx_nbits if t.tx is not None else 0,
                rx_nbits=t.rx_nbits if t.rx_len else 0,
            )
            for t, (tx, rx) in zip(transfers, buffers, strict=True)
        ]
        with self._lock:
            try:
                if wanted != self._current_mode32:
                    ioc.write_mode32(self._fd, wanted)
                    self._current_mode32 = wanted
                ioc.message(self._fd, message)
            except OSError as exc:
                raise TransferError(f"{self.path}: {exc.strerror}", self.path) from exc
        return [rx.raw if rx is not None else b"" for _, rx in buffers]

    def close(self) -> None:
        self._restore()
        self._dev.close()


def _bufsiz() -> int:
    """spidev's per-message limit in each direction (module parameter, default 4096)."""
    try:
        return int(BUFSIZ.read_text())
    except (OSError, ValueError):
        return 4096


def open_controller(device: str) -> Controller:
    return SimController() if device == SIM else SpidevController(device)
