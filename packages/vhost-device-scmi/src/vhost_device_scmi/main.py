"""Entry point: flags → checked devices → sensors (opened once to check them) →
sockets → serve until SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path

from vhost_user_core import main_guard, open_listeners, run_daemon, setup_logging

from .args import DeviceSpec, ScmiConfig, build_parser
from .device import ScmiBackend
from .sensors import FakeAccelerometer, IioSensor, Sensor


def open_sensor(spec: DeviceSpec) -> Sensor:
    props = spec.props
    if spec.kind == "fake":
        return FakeAccelerometer(props.get("name", "fake-accel"))
    dev = props.get("dev")
    return IioSensor(
        Path(props["path"]), props["channel"], props.get("name"), Path(dev) if dev else None
    )


def open_sensors(config: ScmiConfig) -> list[Sensor]:
    """Each connection its own sensors: their update state is the guest's."""
    return [open_sensor(spec) for spec in config.devices]


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = ScmiConfig.from_args(args)
    for sensor in open_sensors(config):  # a bad -d fails here, before the socket
        sensor.close()
    return run_daemon(
        lambda: ScmiBackend(lambda: open_sensors(config)), open_listeners(args, suffix=False)
    )


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
