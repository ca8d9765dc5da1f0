"""The SCMI platform one guest talks to: the base and sensor protocols' commands in,
replies and SENSOR_UPDATE notifications out. Bytes come and go through protocol.py;
the transport (which queue, which buffer) is device.py's."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vhost_user_core import Worker

from . import protocol as p
from .errors import SensorError
from .protocol import BaseMessage, Header, Protocol, SensorMessage, Status
from .sensors import Axis, Sensor

log = logging.getLogger(__name__)

# sensor_config: update interval (31:16), its exponent (15:11), rounding (10:9) are
# kept as given; reserved bits (8:2) and timestamps (not offered) are refused.
_CONFIG_KEPT = 0xFFFF_FE00 | p.CONFIG_ENABLED

Reply = tuple[Status, bytes]


@dataclass
class _State:
    config: int = p.CONFIG_ENABLED
    notify: bool = False


class Platform:
    """One connection's SCMI platform; every call runs on the worker owning both
    queues. `notify` takes a finished notification message for the eventq."""

    def __init__(self, sensors: Sequence[Sensor], notify: Callable[[bytes], None]) -> None:
        self.sensors = list(sensors)
        self._notify = notify
        self._states = [_State() for _ in self.sensors]
        self._worker: Worker | None = None
        self._handlers: dict[int, dict[int, Callable[[bytes, int], Reply]]] = {
            Protocol.BASE: {
                BaseMessage.VERSION: lambda d, r: self._u32(d, p.BASE_VERSION),
                BaseMessage.ATTRIBUTES: lambda d, r: self._u32(
                    d, 1 << 8 | 1
                ),  # 1 agent, 1 protocol
                BaseMessage.MESSAGE_ATTRIBUTES: lambda d, r: self._message_attributes(
                    Protocol.BASE, d
                ),
                BaseMessage.DISCOVER_VENDOR: lambda d, r: self._name(d, p.VENDOR),
                BaseMessage.DISCOVER_SUB_VENDOR: lambda d, r: self._name(d, p.SUB_VENDOR),
                BaseMessage.DISCOVER_IMPLEMENTATION_VERSION: lambda d, r: self._u32(
                    d, p.IMPLEMENTATION_VERSION
                ),
                BaseMessage.DISCOVER_LIST_PROTOCOLS: self._list_protocols,
            },
            Protocol.SENSOR: {
                SensorMessage.VERSION: lambda d, r: self._u32(d, p.SENSOR_VERSION),
                SensorMessage.ATTRIBUTES: self._sensor_attributes,
                SensorMessage.MESSAGE_ATTRIBUTES: lambda d, r: self._message_attributes(
                    Protocol.SENSOR, d
                ),
                SensorMessage.DESCRIPTION_GET: self._description_get,
                SensorMessage.READING_GET: self._reading_get,
                SensorMessage.AXIS_DESCRIPTION_GET: self._axis_description_get,
                SensorMessage.CONFIG_GET: self._config_get,
                SensorMessage.CONFIG_SET: self._config_set,
                SensorMessage.CONTINUOUS_UPDATE_NOTIFY: self._continuous_update_notify,
            },
        }

    def attach(self, worker: Worker) -> None:
        self._worker = worker

    def handle(self, request: bytes, room: int) -> bytes:
        """A command's reply (header, status, values), or b"" when it has no header to
        answer to. `room` is the reply buffer's size: lists are cut to fit it."""
        if len(request) < p.HEADER.size:
            log.warning("command of %d bytes has no header: dropped", len(request))
            return b""
        header = Header.unpack(request)
        if header.type != p.MessageType.COMMAND:
            return p.response(header, Status.PROTOCOL_ERROR)
        handler = self._handlers.get(header.protocol_id, {}).get(header.message_id)
        if handler is None:
            log.debug(
                "protocol %#x message %#x: not supported", header.protocol_id, header.message_id
            )
            return p.response(header, Status.NOT_SUPPORTED)
        status, payload = handler(request[p.HEADER.size :], room - 8)
        return p.response(header, status, payload if status == Status.SUCCESS else b"")

    def stop(self) -> None:
        """The eventq or the connection ends: no sensor keeps updating."""
        for index, state in enumerate(self._states):
            if state.notify:
                self.sensors[index].stop_updates()
            state.notify = False

    def reset(self) -> None:
        self.stop()
        self._states = [_State() for _ in self.sensors]

    # --- common
    @staticmethod
    def _u32(data: bytes, value: int) -> Reply:
        if data:
            return Status.PROTOCOL_ERROR, b""
        return Status.SUCCESS, struct.pack("<I", value)

    @staticmethod
    def _name(data: bytes, name: bytes) -> Reply:
        if data:
            return Status.PROTOCOL_ERROR, b""
        return Status.SUCCESS, name.ljust(p.NAME_SIZE, b"\0")

    def _message_attributes(self, protocol: int, data: bytes) -> Reply:
        args = p.u32s(data, 1)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        if args[0] not in self._handlers[protocol]:
            return Status.NOT_FOUND, b""
        return Status.SUCCESS, struct.pack("<I", 0)

    # --- base
    def _list_protocols(self, data: bytes, room: int) -> Reply:
        args = p.u32s(data, 1)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        others = [Protocol.SENSOR]
        (skip,) = args
        if skip > len(others):
            return Status.INVALID_PARAMETERS, b""
        listed = others[skip:]
        return Status.SUCCESS, struct.pack("<I", len(listed)) + p.protocol_list(listed)

    # --- sensor
    def _sensor(self, sensor_id: int) -> Sensor | None:
        return self.sensors[sensor_id] if sensor_id < len(self.sensors) else None

    def _sensor_attributes(self, data: bytes, room: int) -> Reply:
        if data:
            return Status.PROTOCOL_ERROR, b""
        # sensors (u16), max pending async requests (u8, none: reads are synchronous),
        # reserved; no shared-memory sensor registers
        return Status.SUCCESS, struct.pack("<HBBIII", len(self.sensors), 0, 0, 0, 0, 0)

    def _descriptor(self, sensor_id: int) -> bytes:
        sensor = self.sensors[sensor_id]
        first = sensor.axes[0]
        low = p.ATTR_LOW_EXTENDED | (p.ATTR_LOW_UPDATE_NOTIFY if sensor.notifies else 0)
        high = first.unit | p.field5(first.scale) << 11
        if sensor.multi_axis:
            high |= p.ATTR_HIGH_AXES | len(sensor.axes) << 16
        out = struct.pack("<III", sensor_id, low, high) + p.name16(sensor.name)
        out += struct.pack("<I", 0)  # power: unknown
        if not sensor.multi_axis:  # a scalar's resolution and range (per axis otherwise)
            out += _resolution_and_range(first.resolution, first.scale, first)
        return out

    def _description_get(self, data: bytes, room: int) -> Reply:
        args = p.u32s(data, 1)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        (first,) = args
        if first > len(self.sensors) or (first == len(self.sensors) and self.sensors):
            return Status.INVALID_PARAMETERS, b""
        out, returned = b"", 0
        for sensor_id in range(first, len(self.sensors)):
            descriptor = self._descriptor(sensor_id)
            if 4 + len(out) + len(descriptor) > room:
                break
            out, returned = out + descriptor, returned + 1
        remaining = len(self.sensors) - first - returned
        return Status.SUCCESS, struct.pack("<HH", returned, remaining) + out

    def _axis_description_get(self, data: bytes, room: int) -> Reply:
        args = p.u32s(data, 2)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        sensor_id, first = args
        sensor = self._sensor(sensor_id)
        if sensor is None:
            return Status.NOT_FOUND, b""
        if not sensor.multi_axis:
            return Status.NOT_SUPPORTED, b""
        if first >= len(sensor.axes):
            return Status.INVALID_PARAMETERS, b""
        out, returned = b"", 0
        for axis_id in range(first, len(sensor.axes)):
            axis = sensor.axes[axis_id]
            high = axis.unit | p.field5(axis.scale) << 11
            descriptor = struct.pack("<III", axis_id, p.ATTR_LOW_EXTENDED, high)
            descriptor += p.name16(axis.name)
            descriptor += _resolution_and_range(axis.resolution, axis.scale, axis)
            if 4 + len(out) + len(descriptor) > room:
                break
            out, returned = out + descriptor, returned + 1
        remaining = len(sensor.axes) - first - returned
        return Status.SUCCESS, struct.pack("<I", returned | remaining << 26) + out

    def _reading_get(self, data: bytes, room: int) -> Reply:
        args = p.u32s(data, 2)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        sensor_id, flags = args
        sensor = self._sensor(sensor_id)
        if sensor is None:
            return Status.NOT_FOUND, b""
        if flags & p.READ_ASYNC:  # the descriptor says no asynchronous reads
            return Status.NOT_SUPPORTED, b""
        if flags:
            return Status.INVALID_PARAMETERS, b""
        try:
            values = sensor.read()
        except SensorError as exc:
            log.warning("sensor %d: %s", sensor_id, exc)
            return Status.HARDWARE_ERROR, b""
        return Status.SUCCESS, p.readings(values, 0)

    def _config_get(self, data: bytes, room: int) -> Reply:
        args = p.u32s(data, 1)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        if self._sensor(args[0]) is None:
            return Status.NOT_FOUND, b""
        return Status.SUCCESS, struct.pack("<I", self._states[args[0]].config)

    def _config_set(self, data: bytes, room: int) -> Reply:
        args = p.u32s(data, 2)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        sensor_id, config = args
        if self._sensor(sensor_id) is None:
            return Status.NOT_FOUND, b""
        if config & ~_CONFIG_KEPT:
            return Status.INVALID_PARAMETERS, b""
        self._states[sensor_id].config = config
        return Status.SUCCESS, b""

    def _continuous_update_notify(self, data: bytes, room: int) -> Reply:
        args = p.u32s(data, 2)
        if args is None:
            return Status.PROTOCOL_ERROR, b""
        sensor_id, control = args
        sensor = self._sensor(sensor_id)
        if sensor is None:
            return Status.NOT_FOUND, b""
        if control & ~1:
            return Status.INVALID_PARAMETERS, b""
        if not sensor.notifies:
            return Status.NOT_SUPPORTED, b""
        state = self._states[sensor_id]
        enable = bool(control)
        if enable == state.notify:
            return Status.SUCCESS, b""
        if not enable:
            sensor.stop_updates()
            state.notify = False
            return Status.SUCCESS, b""
        if self._worker is None:
            return Status.GENERIC_ERROR, b""
        try:
            sensor.start_updates(self._worker, lambda values: self._update(sensor_id, values))
        except SensorError as exc:
            log.warning("sensor %d: %s", sensor_id, exc)
            return Status.HARDWARE_ERROR, b""
        state.notify = True
        return Status.SUCCESS, b""

    def _update(self, sensor_id: int, values: list[int]) -> None:
        if not self._states[sensor_id].config & p.CONFIG_ENABLED:
            return  # a disabled sensor sends nothing
        payload = struct.pack("<II", 0, sensor_id) + p.readings(values, 0)
        self._notify(p.notification(p.SENSOR_UPDATE, Protocol.SENSOR, payload))


def _resolution_and_range(resolution: int, exponent: int, axis: Axis) -> bytes:
    word = resolution & 0x7FF_FFFF | p.field5(exponent) << 27
    return struct.pack("<Iqq", word, axis.min_range, axis.max_range)
