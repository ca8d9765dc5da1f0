"""The host side: sensors behind one small interface, the shipped `fake` accelerometer
and `iio` (a sysfs IIO device). A sensor only knows its axes and values; SCMI's bytes
are protocol.py's, its state machine scmi.py's."""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Protocol

from vhost_user_core import TimerHandle, Worker

from .errors import ConfigError, SensorError

log = logging.getLogger(__name__)

# SCMI unit codes (the spec's sensor type table).
UNIT_NONE, UNIT_DEGREES_C, UNIT_VOLTS, UNIT_AMPS, UNIT_WATTS = 0x0, 0x2, 0x5, 0x6, 0x7
UNIT_JOULES, UNIT_LUX, UNIT_KPA, UNIT_HERTZ, UNIT_METERS = 0x8, 0xD, 0xF, 0x14, 0x1F
UNIT_RADIANS, UNIT_GAUSS, UNIT_PERCENTAGE, UNIT_COUNTS = 0x24, 0x2D, 0x41, 0x43
UNIT_RADIANS_SEC, UNIT_METERS_SEC_SQUARED, UNIT_METERS_SEC = 0x57, 0x59, 0x5A
UNIT_COLOR_TEMP_K, UNIT_GRAMS, UNIT_SECS = 0x3B, 0x44, 0x15

# IIO channel type → (SCMI unit, power of ten from IIO's unit to SCMI's). IIO's units
# are Documentation/ABI/testing/sysfs-bus-iio's: temperature in m°C, voltage in mV...
IIO_UNITS: dict[str, tuple[int, int]] = {
    "accel": (UNIT_METERS_SEC_SQUARED, 0),
    "anglvel": (UNIT_RADIANS_SEC, 0),
    "magn": (UNIT_GAUSS, 0),
    "temp": (UNIT_DEGREES_C, -3),
    "voltage": (UNIT_VOLTS, -3),
    "current": (UNIT_AMPS, -3),
    "power": (UNIT_WATTS, -3),
    "energy": (UNIT_JOULES, 0),
    "pressure": (UNIT_KPA, 0),
    "humidityrelative": (UNIT_PERCENTAGE, -3),
    "illuminance": (UNIT_LUX, 0),
    "intensity": (UNIT_NONE, 0),
    "proximity": (UNIT_NONE, 0),
    "distance": (UNIT_METERS, 0),
    "velocity": (UNIT_METERS_SEC, 0),
    "angl": (UNIT_RADIANS, 0),
    "rot": (UNIT_RADIANS, 0),
    "gravity": (UNIT_METERS_SEC_SQUARED, 0),
    "steps": (UNIT_COUNTS, 0),
    "frequency": (UNIT_HERTZ, 0),
    "colortemp": (UNIT_COLOR_TEMP_K, 0),
    "massconcentration": (UNIT_GRAMS, -6),
    "count": (UNIT_COUNTS, 0),
}


@dataclass(frozen=True)
class Axis:
    """One axis (or a scalar sensor's one value): a reading r means r·10^scale units;
    the resolution is resolution·10^scale."""

    name: str
    unit: int
    scale: int
    resolution: int = 1
    min_range: int = -(1 << 63)
    max_range: int = (1 << 63) - 1


UpdateCallback = Callable[[list[int]], None]


class Sensor(Protocol):
    """A sensor as the SCMI sensor protocol sees it; called on the worker thread."""

    name: str
    axes: list[Axis]  # len 1 with `multi_axis` False: a scalar sensor
    multi_axis: bool
    notifies: bool  # can it deliver continuous updates

    def read(self) -> list[int]:
        """One value per axis, or SensorError."""

    def start_updates(self, worker: Worker, callback: UpdateCallback) -> None:
        """Deliver readings to `callback` on `worker` until stop_updates()."""

    def stop_updates(self) -> None: ...

    def close(self) -> None: ...


class FakeAccelerometer:
    """The double: three axes in m/s² (scale −3, so mm/s²), preset values that turn
    slowly, and an update every `period` seconds from a worker timer."""

    multi_axis = True
    notifies = True

    def __init__(self, name: str = "fake-accel", period: float = 1.0) -> None:
        self.name = name
        self.period = period
        self.axes = [Axis(a, UNIT_METERS_SEC_SQUARED, -3) for a in ("x", "y", "z")]
        self._count = 0
        self._timer: TimerHandle | None = None
        self._worker: Worker | None = None
        self._callback: UpdateCallback | None = None

    def read(self) -> list[int]:
        self._count += 1
        return [self._count % 1000, 0, 9806]  # still, upright: gravity on z

    def start_updates(self, worker: Worker, callback: UpdateCallback) -> None:
        self.stop_updates()
        self._worker, self._callback = worker, callback
        self._timer = worker.call_later(self.period, self._tick)

    def _tick(self) -> None:
        if self._worker is None or self._callback is None:
            return
        self._timer = self._worker.call_later(self.period, self._tick)
        self._callback(self.read())

    def stop_updates(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._worker = self._callback = None

    def close(self) -> None:
        self.stop_updates()


def exponent_and_step(factor: Decimal) -> tuple[int, int]:
    """Write `factor` (a raw count in SCMI's unit) as step·10^exp with an integer step
    that fits the 27-bit resolution field: the largest exponent that is exact, so
    readings (raw · step) stay small."""
    if factor <= 0:
        raise ValueError(f"scale {factor} is not positive")
    for exp in range(15, -17, -1):
        step = factor.scaleb(-exp)
        if step == step.to_integral_value() and step < (1 << 27):
            return exp, int(step)
    # not exact: keep 7 significant digits
    exp = math.floor(math.log10(factor)) - 6
    return exp, max(1, round(factor.scaleb(-exp)))


_TYPE_RE = re.compile(r"^(le|be):([su])(\d+)/(\d+)(?:X(\d+))?>>(\d+)$")


@dataclass(frozen=True)
class ScanElement:
    """One buffered channel's place and format (scan_elements/*_type)."""

    index: int
    big_endian: bool
    signed: bool
    bits: int
    storage: int
    shift: int

    @classmethod
    def parse(cls, index: int, text: str) -> ScanElement:
        match = _TYPE_RE.match(text.strip())
        if match is None:
            raise ValueError(f"scan element type {text.strip()!r} not understood")
        endian, sign, bits, storage, repeat, shift = match.groups()
        if repeat is not None or int(storage) not in (8, 16, 32, 64) or int(bits) > int(storage):
            raise ValueError(f"scan element type {text.strip()!r} not supported")
        return cls(index, endian == "be", sign == "s", int(bits), int(storage), int(shift))

    def decode(self, raw: bytes) -> int:
        value = int.from_bytes(raw, "big" if self.big_endian else "little") >> self.shift
        value &= (1 << self.bits) - 1
        if self.signed and value & (1 << (self.bits - 1)):
            value -= 1 << self.bits
        return value


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SensorError(f"cannot read {path}: {exc.strerror}") from exc


def _decimal(path: Path) -> Decimal:
    text = _read(path)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise SensorError(f"{path}: {text!r} is not a number") from None


class IioSensor:
    """The real one: `channel` (e.g. in_accel) of the IIO device at `path`; axes are
    its `<channel>_<axis>_raw` files (or one `<channel>_raw`). Values are
    (raw + offset) · scale in IIO's unit, converted to SCMI's. With `dev` (the
    /dev/iio:deviceN node) and scan elements for every axis, continuous updates come
    from the buffer: its fd sits on the worker's epoll."""

    def __init__(self, path: Path, channel: str, name: str | None = None, dev: Path | None = None):
        self.path = path
        self.channel = channel
        self.name = name or self._default_name()
        kind = channel.removeprefix("in_").removeprefix("out_").rstrip("0123456789")
        if not channel.startswith(("in_", "out_")) or kind not in IIO_UNITS:
            raise ConfigError(f"iio channel {channel!r}: not an IIO channel type this knows")
        unit, unit_exp = IIO_UNITS[kind]
        if not path.is_dir():
            raise ConfigError(f"iio path {path}: no such IIO device directory")
        names = sorted(
            m.group(1)
            for p in path.iterdir()
            if (m := re.fullmatch(re.escape(channel) + r"_([a-z0-9]+)_raw", p.name))
        )
        self.multi_axis = bool(names)
        self._prefixes = [f"{channel}_{a}" for a in names] or [channel]
        if not (path / f"{self._prefixes[0]}_raw").exists():
            raise ConfigError(f"iio {path}: channel {channel!r} has no _raw value")
        self._factors: list[Decimal] = []
        self._offsets: list[Decimal] = []
        axes = []
        for prefix, axis_name in zip(self._prefixes, names or [channel], strict=True):
            scale = self._shared(prefix, "scale", Decimal(1))
            offset = self._shared(prefix, "offset", Decimal(0))
            try:
                exp, step = exponent_and_step(scale.scaleb(unit_exp))
            except ValueError as exc:
                raise ConfigError(f"iio {path}/{prefix}: {exc}") from None
            self._factors.append(scale.scaleb(unit_exp - exp))
            self._offsets.append(offset)
            axes.append(Axis(axis_name, unit, exp, step))
        self.axes = axes
        self.dev = dev if dev is not None else Path("/dev") / path.name
        self._elements = self._scan_elements()
        self.notifies = self._elements is not None and self.dev.exists()
        self._fd: int | None = None
        self._worker: Worker | None = None
        self._pending = b""

    def _default_name(self) -> str:
        name_file = self.path / "name"
        name = name_file.read_text().strip() if name_file.exists() else self.path.name
        return name.encode()[:15].decode(errors="ignore")  # SCMI's char[16] with its NUL

    def _shared(self, prefix: str, attr: str, default: Decimal) -> Decimal:
        """`<axis>_<attr>`, else the channel type's shared `<channel>_<attr>`."""
        for candidate in (f"{prefix}_{attr}", f"{self.channel}_{attr}"):
            if (self.path / candidate).exists():
                try:
                    return _decimal(self.path / candidate)
                except SensorError as exc:
                    raise ConfigError(str(exc)) from None
        return default

    def _scan_elements(self) -> list[tuple[ScanElement, str]] | None:
        """Every enabled-able scan element in buffer order; ours are marked by name."""
        scan = self.path / "scan_elements"
        if not scan.is_dir():
            return None
        elements = []
        for index_file in scan.glob("*_index"):
            prefix = index_file.name.removesuffix("_index")
            try:
                index = int(_read(index_file))
                element = ScanElement.parse(index, _read(scan / f"{prefix}_type"))
            except (ValueError, SensorError) as exc:
                log.warning("iio %s: scan element %s ignored: %s", self.path, prefix, exc)
                continue
            elements.append((element, prefix))
        if not all(any(p == prefix for _, p in elements) for prefix in self._prefixes):
            return None
        return sorted(elements, key=lambda e: e[0].index)

    def _convert(self, raws: list[Decimal]) -> list[int]:
        return [
            int(((raw + off) * f).to_integral_value())
            for raw, off, f in zip(raws, self._offsets, self._factors, strict=True)
        ]

    def read(self) -> list[int]:
        return self._convert([_decimal(self.path / f"{p}_raw") for p in self._prefixes])

    # The buffered interface: our scan elements enabled, the buffer on, its node read.
    def _write(self, name: str, value: str) -> None:
        try:
            (self.path / name).write_text(value)
        except OSError as exc:
            raise SensorError(f"cannot write {self.path / name}: {exc.strerror}") from exc

    def start_updates(self, worker: Worker, callback: UpdateCallback) -> None:
        if self._elements is None:
            raise SensorError(f"iio {self.path}: no buffered interface")
        self.stop_updates()
        for _, prefix in self._elements:
            self._write(f"scan_elements/{prefix}_en", "1" if prefix in self._prefixes else "0")
        self._write("buffer/enable", "1")
        try:
            self._fd = os.open(self.dev, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self._write("buffer/enable", "0")
            raise SensorError(f"cannot open {self.dev}: {exc.strerror}") from exc
        self._worker, self._pending = worker, b""
        worker.add_reader(self._fd, lambda: self._samples(callback))

    def _scan_layout(self) -> tuple[int, list[tuple[int, ScanElement, str]]]:
        """Offsets of the enabled elements in one scan (each aligned to its size)."""
        assert self._elements is not None
        offset, layout = 0, []
        for element, prefix in self._elements:
            if prefix not in self._prefixes:
                continue
            size = element.storage // 8
            offset += -offset % size
            layout.append((offset, element, prefix))
            offset += size
        biggest = max(e.storage // 8 for _, e, _ in layout)
        return offset + (-offset % biggest), layout

    def _samples(self, callback: UpdateCallback) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("iio %s: buffer read failed: %s", self.dev, exc.strerror)
            self.stop_updates()
            return
        if not data:  # the writer went away (a FIFO standing in): nothing more comes
            self.stop_updates()
            return
        size, layout = self._scan_layout()
        self._pending += data
        while len(self._pending) >= size:
            scan, self._pending = self._pending[:size], self._pending[size:]
            by_prefix = {p: Decimal(e.decode(scan[o : o + e.storage // 8])) for o, e, p in layout}
            callback(self._convert([by_prefix[p] for p in self._prefixes]))

    def stop_updates(self) -> None:
        if self._fd is None:
            return
        if self._worker is not None:
            self._worker.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = self._worker = None
        try:
            self._write("buffer/enable", "0")
        except SensorError as exc:
            log.warning("%s", exc)

    def close(self) -> None:
        self.stop_updates()


def now_ns() -> int:
    return time.monotonic_ns()
