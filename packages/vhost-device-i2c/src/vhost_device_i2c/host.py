"""The host side behind one small interface (`I2cBus`): a real adapter through smbus2
(`SmbusAdapter`) and the shipped double, the simulated bus `sim` (`SimBus`); `open_buses`
turns the checked config into an address map."""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from smbus2 import I2cFunc as F
from smbus2 import SMBus, i2c_msg
from smbus2.smbus2 import I2C_RDWR, i2c_rdwr_ioctl_data

from .args import I2cConfig
from .errors import ConfigError, TransferError

log = logging.getLogger(__name__)

SIM_BUS = "sim"
EEPROM_SIZE = 256
SMBUS_BLOCK_MAX = 32
#: What upstream needs of an adapter without plain I2C before it serves it.
SMBUS_ANY = F.SMBUS_QUICK | F.SMBUS_BYTE | F.SMBUS_BYTE_DATA | F.SMBUS_WORD_DATA


@dataclass(frozen=True)
class Message:
    """One I2C message: a write of `data`, or a read of `length` bytes."""

    addr: int
    read: bool
    data: bytes = b""
    length: int = 0


class I2cBus(Protocol):
    """A bus the guest's transfers go to; called from every connection's worker."""

    name: str

    def transfer(self, messages: Sequence[Message]) -> list[bytes]:
        """Do `messages` as one combined transfer (repeated start between them); the
        bytes each read got (b"" for writes), or raise TransferError."""

    def close(self) -> None: ...


class Eeprom:
    """A 24c02: 256 bytes and a current offset; a write's first byte sets the offset and
    the rest are stored, a read returns bytes from the offset; both wrap at 256."""

    def __init__(self) -> None:
        self.cells = bytearray(EEPROM_SIZE)
        self.offset = 0

    def write(self, data: bytes) -> None:
        if not data:
            return  # an SMBus quick write: only the address is acknowledged
        self.offset = data[0]
        for byte in data[1:]:
            self.cells[self.offset] = byte
            self.offset = (self.offset + 1) % EEPROM_SIZE

    def read(self, length: int) -> bytes:
        out = bytes(self.cells[(self.offset + i) % EEPROM_SIZE] for i in range(length))
        self.offset = (self.offset + length) % EEPROM_SIZE
        return out


class SimBus:
    """The double: an EEPROM at each listed address. Plain I2C, so any SMBus operation
    the guest emulates with I2C messages works too."""

    def __init__(self, addresses: Sequence[int], name: str = SIM_BUS) -> None:
        self.name = name
        self.devices = {addr: Eeprom() for addr in addresses}
        self._lock = threading.Lock()  # one transfer at a time, as on a real bus

    def transfer(self, messages: Sequence[Message]) -> list[bytes]:
        with self._lock:
            for msg in messages:
                if msg.addr not in self.devices:
                    raise TransferError(f"{self.name}: no device at {msg.addr:#04x}", msg.addr)
            out = []
            for msg in messages:
                device = self.devices[msg.addr]
                if msg.read:
                    out.append(device.read(msg.length))
                else:
                    device.write(msg.data)
                    out.append(b"")
            return out

    def close(self) -> None:
        pass


class SmbusAdapter:
    """The real one: /dev/i2c-N through smbus2. Plain I2C (`i2c_rdwr`, one combined
    transfer) when the adapter has I2C_FUNC_I2C, else each transfer is mapped to the one
    SMBus operation it is on the wire (quick, byte, byte/word data, I2C block)."""

    def __init__(self, number: int) -> None:
        self.name = f"/dev/i2c-{number}"
        try:
            self._bus = SMBus(number)
            self.funcs = F(self._bus.funcs)
        except OSError as exc:
            raise ConfigError(f"cannot open {self.name}: {exc.strerror}") from exc
        self.plain = bool(self.funcs & F.I2C)
        if not self.plain and not self.funcs & SMBUS_ANY:
            self._bus.close()
            raise ConfigError(f"{self.name} has neither plain I2C nor SMBus byte/word transfers")
        self._lock = threading.Lock()

    def transfer(self, messages: Sequence[Message]) -> list[bytes]:
        addr = messages[0].addr
        with self._lock:
            try:
                if self.plain:
                    return self._rdwr(messages)
                return self._smbus(messages)
            except OSError as exc:
                raise TransferError(f"{self.name} at {addr:#04x}: {exc.strerror}", addr) from exc

    def _rdwr(self, messages: Sequence[Message]) -> list[bytes]:
        msgs = [
            i2c_msg.read(m.addr, m.length) if m.read else i2c_msg.write(m.addr, m.data)
            for m in messages
        ]
        # smbus2's i2c_rdwr() drops the ioctl's result, the count of messages the
        # adapter did: a driver may do fewer without an error (i2c-virtio does, when the
        # device fails a request), so the same ioctl here, with its result checked.
        request = i2c_rdwr_ioctl_data.create(*msgs)  # type: ignore[arg-type]  # its stub's *args
        assert self._bus.fd is not None  # open until close()
        done = fcntl.ioctl(self._bus.fd, I2C_RDWR, request)
        if done != len(msgs):
            raise TransferError(
                f"{self.name}: {done} of {len(msgs)} messages done", messages[0].addr
            )
        return [bytes(msg) if m.read else b"" for m, msg in zip(messages, msgs, strict=True)]

    def _need(self, func: F, what: str, addr: int) -> None:
        if not self.funcs & func:
            raise TransferError(f"{self.name} cannot do SMBus {what}", addr)

    def _smbus(self, messages: Sequence[Message]) -> list[bytes]:
        bus, first, addr = self._bus, messages[0], messages[0].addr
        if any(m.addr != addr for m in messages):
            raise TransferError(f"{self.name}: an SMBus transfer has one address", addr)
        if len(messages) == 1 and not first.read:
            data = first.data
            if not data:
                self._need(F.SMBUS_QUICK, "quick", addr)
                bus.write_quick(addr)
            elif len(data) == 1:
                self._need(F.SMBUS_WRITE_BYTE, "write byte", addr)
                bus.write_byte(addr, data[0])
            elif len(data) == 2:
                self._need(F.SMBUS_WRITE_BYTE_DATA, "write byte data", addr)
                bus.write_byte_data(addr, data[0], data[1])
            elif len(data) == 3:
                self._need(F.SMBUS_WRITE_WORD_DATA, "write word data", addr)
                bus.write_word_data(addr, data[0], data[1] | data[2] << 8)
            elif len(data) - 1 <= SMBUS_BLOCK_MAX and self.funcs & F.SMBUS_WRITE_I2C_BLOCK:
                bus.write_i2c_block_data(addr, data[0], list(data[1:]))
            elif data[1] == len(data) - 2 <= SMBUS_BLOCK_MAX:  # cmd, count, bytes
                self._need(F.SMBUS_WRITE_BLOCK_DATA, "write block data", addr)
                bus.write_block_data(addr, data[0], list(data[2:]))
            else:
                raise TransferError(f"{self.name}: a {len(data)}-byte write is no SMBus", addr)
            return [b""]
        if len(messages) == 1 and first.length == 1:
            self._need(F.SMBUS_READ_BYTE, "read byte", addr)
            return [bytes([bus.read_byte(addr)])]
        if len(messages) == 2 and not first.read and len(first.data) == 1 and messages[1].read:
            cmd, length = first.data[0], messages[1].length
            if length == 1:
                self._need(F.SMBUS_READ_BYTE_DATA, "read byte data", addr)
                return [b"", bytes([bus.read_byte_data(addr, cmd)])]
            if length == 2:
                self._need(F.SMBUS_READ_WORD_DATA, "read word data", addr)
                return [b"", bus.read_word_data(addr, cmd).to_bytes(2, "little")]
            if 0 < length <= SMBUS_BLOCK_MAX:
                self._need(F.SMBUS_READ_I2C_BLOCK, "read I2C block data", addr)
                return [b"", bytes(bus.read_i2c_block_data(addr, cmd, length))]
        shape = " + ".join(f"r{m.length}" if m.read else f"w{len(m.data)}" for m in messages)
        raise TransferError(f"{self.name}: the transfer {shape} has no SMBus equivalent", addr)

    def close(self) -> None:
        self._bus.close()


def find_adapter(name: str, sysfs: Path = Path("/sys")) -> int | None:
    """The number of the one adapter whose sysfs name is `name`; None if there is none,
    ConfigError if several share it."""
    found = []
    for entry in sorted((sysfs / "bus/i2c/devices").glob("i2c-*")):
        try:
            if (entry / "name").read_text().strip() == name:
                found.append(int(entry.name.removeprefix("i2c-")))
        except (OSError, ValueError):
            continue
    if len(found) > 1:
        listed = ", ".join(f"/dev/i2c-{n}" for n in found)
        raise ConfigError(f"--device-list: the adapter name {name!r} is ambiguous: {listed}")
    return found[0] if found else None


class BusMap:
    """The guest's one flat address space: which bus each listed address is on."""

    def __init__(self, buses: Sequence[tuple[I2cBus, Sequence[int]]]) -> None:
        self.buses = [bus for bus, _ in buses]
        self.by_addr = {addr: bus for bus, addresses in buses for addr in addresses}

    def close(self) -> None:
        for bus in self.buses:
            bus.close()


def open_buses(config: I2cConfig, sysfs: Path = Path("/sys")) -> BusMap:
    opened: list[tuple[I2cBus, Sequence[int]]] = []
    numbers: set[int] = set()
    try:
        for spec in config.buses:
            number = int(spec.bus) if spec.bus.isdigit() else find_adapter(spec.bus, sysfs)
            if number is None:
                if spec.bus != SIM_BUS:
                    raise ConfigError(f"--device-list: no I2C adapter is named {spec.bus!r}")
                opened.append((SimBus(spec.addresses), spec.addresses))
                continue
            if number in numbers:
                raise ConfigError(f"--device-list: /dev/i2c-{number} is listed twice")
            numbers.add(number)
            opened.append((SmbusAdapter(number), spec.addresses))
            log.info("serving %s for %s", f"/dev/i2c-{number}", spec.addresses)
    except BaseException:
        BusMap(opened).close()
        raise
    return BusMap(opened)
