"""Runs inside the host-kernel guest (test_spi_lm70llp.py boots it): puts spidev on the
kernel's spi-lm70llp controller (bit-banged over QEMU's emulated parallel port), then
drives vhost-device-spi's real spidev path through the core's frontend. Writes one JSON
object of what it saw to $OUTPORT."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from spi_driver import SpiDriver, head  # noqa: E402

from vhost_device_spi import spidev_ioctl as ioc  # noqa: E402
from vhost_device_spi.device import SpiBackend  # noqa: E402
from vhost_device_spi.host import SpidevController  # noqa: E402
from vhost_user_core.frontend import Frontend  # noqa: E402
from vhost_user_core.testing.harness import connected_frontend, daemon_process  # noqa: E402


def bind_spidev() -> str:
    (device,) = Path("/sys/bus/spi/devices").iterdir()
    if (device / "driver").exists():
        (device / "driver" / "unbind").write_text(device.name)
    (device / "driver_override").write_text("spidev")
    Path("/sys/bus/spi/drivers/spidev/bind").write_text(device.name)
    bus, cs = device.name[3:].split(".")
    return f"/dev/spidev{bus}.{cs}"


def settings(path: str) -> list[int]:
    fd = os.open(path, os.O_RDWR)
    try:
        out = []
        for request, size in (
            (ioc.SPI_IOC_RD_MODE32, 4),
            (ioc.SPI_IOC_RD_BITS_PER_WORD, 1),
            (ioc.SPI_IOC_RD_MAX_SPEED_HZ, 4),
        ):
            buf = bytearray(size)
            fcntl.ioctl(fd, request, buf, True)
            out.append(int.from_bytes(buf, sys.byteorder))
        return out
    finally:
        os.close(fd)


def main() -> dict[str, Any]:
    seen: dict[str, Any] = {}
    path = bind_spidev()
    seen["path"] = path
    seen["before"] = settings(path)
    controller = SpidevController(path)
    seen["after_probe"] = settings(path)
    config = controller.config
    seen["config"] = {k: int(v) for k, v in config.__dict__.items()}
    seen["message_limit"] = controller.message_limit
    backends: list[SpiBackend] = []

    def factory() -> SpiBackend:
        backends.append(SpiBackend(controller))
        return backends[-1]

    with tempfile.TemporaryDirectory() as tmp:
        with connected_frontend(factory, Path(tmp) / "spi.sock") as frontend:
            frontend.start_device(1, 1024)
            driver = SpiDriver(frontend)
            seen["config_space"] = driver.config().hex()
            driver.post(head(), b"\x5a\xa5", 0)
            driver.post(head(), None, 2)
            driver.post(head(cs_change=1), None, 4)
            driver.post(head(), b"\x01", 0)
            driver.publish()
            seen["batch"] = [[a.result, a.rx.hex(), a.used] for a in driver.answers()]
            seen["batch_messages"] = backends[0].messages
            seen["mode_batch"] = []
            for mode in (0, 1, 2, 3):
                driver.post(head(mode=mode), None, 1)
            driver.publish()
            seen["mode_batch"] = [[a.result, a.rx.hex()] for a in driver.answers()]
            seen["mode_messages"] = backends[0].messages - seen["batch_messages"]
            seen["mode_during"] = settings(path)[0]
            answer = driver.transfer(head(), b"ab", 2)
            seen["full_duplex"] = [answer.result, answer.rx.hex()]
            answer = driver.transfer(head(freq=config.max_freq_hz + 1), None, 1)
            seen["too_fast"] = answer.result
            answer = driver.transfer(head(bits_per_word=16), None, 2)
            seen["words16"] = [answer.result, answer.rx.hex()]
            answer = driver.transfer(head(mode=4), None, 1)
            seen["cs_high"] = answer.result
            seen["hold_delay"] = driver.transfer(head(cs_delay_hold_ns=1500), b"x", 0).result
    controller.close()
    seen["after_close"] = settings(path)
    seen["daemon"] = run_daemon(path)
    seen["after_daemon"] = settings(path)
    return seen


def run_daemon(path: str) -> dict[str, Any]:
    """The installed command on the same node, as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        socket, log = Path(tmp) / "d.sock0", Path(tmp) / "log"
        argv = [sys.executable, "-m", "vhost_device_spi.main", "-s", str(socket)[:-1], "-l", path]
        with daemon_process(argv, log=log, sockets=[socket]):
            with Frontend.connect(socket) as frontend:
                frontend.start_device(1, 1024)
                answer = SpiDriver(frontend).transfer(head(), b"\x12\x34", 0)
        return {"answer": [answer.result, answer.used], "log": log.read_text()}


if __name__ == "__main__":
    try:
        result = main()
    except Exception:
        result = {"error": traceback.format_exc()}
    with open(os.environ.get("OUTPORT", "/dev/stdout"), "w") as out:
        out.write(json.dumps(result) + "\n")
