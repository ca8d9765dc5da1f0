"""The smbus2 adapter against the real kernel: inside a hostkernel guest, `i2c-stub`
is an SMBus-only adapter (no I2C_FUNC_I2C) with a chip at 0x50; the daemon finds it by
its sysfs name and maps each transfer the driver sends to one SMBus operation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from i2c_driver import ERR, OK, Driver, r, w

from vhost_device_i2c.args import I2cConfig, parse_device_list
from vhost_device_i2c.errors import ConfigError
from vhost_device_i2c.host import SmbusAdapter, find_adapter, open_buses
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

pytestmark = pytest.mark.hostkernel("i2c-dev", "i2c-stub chip_addr=0x50")

STUB = "SMBus stub driver"


def test_the_stub_is_an_smbus_only_adapter() -> None:
    number = find_adapter(STUB)
    assert number is not None
    adapter = SmbusAdapter(number)
    try:
        assert not adapter.plain
    finally:
        adapter.close()


def test_one_adapter_by_name_and_by_number_is_listed_twice() -> None:
    number = find_adapter(STUB)
    config = I2cConfig(parse_device_list(f"{STUB}:0x50,{number}:0x51"))
    with pytest.raises(ConfigError, match=f"/dev/i2c-{number} is listed twice"):
        open_buses(config)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    base = tmp_path / "i2c.sock"
    argv = [sys.executable, "-m", "vhost_device_i2c.main", "-s", str(base)]
    argv += ["-l", f"{STUB}:0x50:0x51"]  # 0x51 is listed, but no chip answers there
    socket = f"{base}0"
    # Python's first start in the guest reads every module over 9p under TCG: the
    # harness's 10 s wait for the socket is not always enough, hence a warm-up.
    subprocess.run([sys.executable, "-c", "import vhost_device_i2c.main"], check=True)
    with daemon_process(argv, log=tmp_path / "log", sockets=[socket]):
        with Frontend.connect(socket) as frontend:
            frontend.start_device(1, 128)
            yield Driver(frontend)


def test_byte_data_and_byte(driver: Driver) -> None:
    assert driver.statuses(w(0x50, 0x10, 0xAB)) == [OK]  # write byte data
    assert driver.transfer(w(0x50, 0x10), r(0x50, 1))[1] == (OK, b"\xab")  # read byte data
    assert driver.statuses(w(0x50, 0x10)) == [OK]  # write byte: the stub's pointer
    assert driver.transfer(r(0x50, 1)) == [(OK, b"\xab")]  # read byte from it


def test_word_data(driver: Driver) -> None:
    assert driver.statuses(w(0x50, 0x20, 0x34, 0x12)) == [OK]
    assert driver.transfer(w(0x50, 0x20), r(0x50, 2))[1] == (OK, b"\x34\x12")


def test_i2c_block_data(driver: Driver) -> None:
    assert driver.statuses(w(0x50, 0x30, 1, 2, 3, 4, 5, 6)) == [OK]
    assert driver.transfer(w(0x50, 0x30), r(0x50, 6))[1] == (OK, bytes([1, 2, 3, 4, 5, 6]))
    assert driver.transfer(w(0x50, 0x32), r(0x50, 3))[1] == (OK, b"\x03\x04\x05")
    # two bytes are read word data: the stub keeps a 16-bit word per register, and a
    # block write set only their low bytes
    assert driver.transfer(w(0x50, 0x32), r(0x50, 2))[1] == (OK, b"\x03\x00")


def test_quick_and_a_missing_chip(driver: Driver) -> None:
    assert driver.statuses(w(0x50)) == [OK]
    assert driver.statuses(w(0x51)) == [ERR]  # the kernel says ENXIO/ENODEV: ERR
    assert driver.statuses(w(0x51, 0, 1)) == [ERR]


def test_a_transfer_with_no_smbus_equivalent_fails_alone(driver: Driver) -> None:
    assert driver.statuses(w(0x50, 0x40), r(0x50, 1), r(0x50, 1)) == [ERR, ERR, ERR]
    assert driver.statuses(w(0x50, 0x40, 7)) == [OK]
