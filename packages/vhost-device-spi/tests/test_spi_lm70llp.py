"""The real spidev path against the real kernel: Debian's 6.12 guest kernel, booted on
this machine's root (testing.hostroot) with an emulated parallel port, loads
spi-lm70llp (the kernel's bit-banged SPI controller on a parport), and
spi_lm70llp_guest.py binds spidev to its one device with driver_override, then probes
it and drives vhost-device-spi's backend through the core's frontend. One boot; each
test checks one thing the guest script saw.

The controller is 3-wire (half duplex, mode 0 only) and nothing drives MISO, so reads
return zeros and a full-duplex transfer is refused by the kernel."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from vhost_device_spi.protocol import SpiConfig
from vhost_user_core.testing.guest_image import GuestImage
from vhost_user_core.testing.hostkernel import inner_env
from vhost_user_core.testing.hostroot import HostRootGuest, ModuleSpec

pytestmark = pytest.mark.guest

GUEST_SCRIPT = Path(__file__).with_name("spi_lm70llp_guest.py")
SPI_3WIRE = 0x10


@pytest.fixture(scope="module")
def seen(guest_image: GuestImage, request: pytest.FixtureRequest) -> dict[str, Any]:
    result = HostRootGuest(guest_image).run(
        [sys.executable, str(GUEST_SCRIPT)],
        cwd=request.config.rootpath,
        env=inner_env(),
        modules=[ModuleSpec("parport_pc"), ModuleSpec("spi-lm70llp")],
        devices=["-chardev", "null,id=pp", "-device", "isa-parallel,chardev=pp"],
        timeout=300,
    )
    assert result.rc == 0, result.console_output[-3000:]
    found: dict[str, Any] = json.loads(result.output_bytes.decode())
    assert "error" not in found, found.get("error")
    return found


def test_spidev_binds_to_the_kernels_controller(seen: dict[str, Any]) -> None:
    assert seen["path"] == "/dev/spidev0.0"


def test_probe_reads_what_the_controller_supports(seen: dict[str, Any]) -> None:
    mode, bits, speed = seen["before"]
    assert mode & SPI_3WIRE and bits == 8 and speed > 0
    assert seen["config"] == {
        **SpiConfig().__dict__,  # one chip select, cs_change, delays 0
        "cs_change_supported": 1,
        "bits_per_word_mask": 0xFFFFFFFF,  # the bit-banger takes 1..32
        "mode_func_supported": 0b0101,  # CPHA=0 and CPOL=0 only; no CS_HIGH, LSB, loop
        "max_freq_hz": speed,
        "max_cs_hold_ns": 65_535_000,  # spidev's delay_usecs, run by the SPI core
    }
    assert SpiConfig(**seen["config"]).encode().hex() == seen["config_space"]
    assert seen["message_limit"] == 4096  # spidev's bufsiz


def test_probe_and_close_put_the_settings_back(seen: dict[str, Any]) -> None:
    assert seen["after_probe"] == seen["before"]
    assert seen["after_close"] == seen["before"]


def test_a_batch_of_half_duplex_transfers_is_one_message(seen: dict[str, Any]) -> None:
    assert seen["batch"] == [[0, "", 1], [0, "0000", 3], [0, "00000000", 5], [0, "", 1]]
    assert seen["batch_messages"] == 1


def test_modes_the_probe_did_not_find_are_param_err(seen: dict[str, Any]) -> None:
    assert seen["mode_batch"] == [[0, "00"], [1, "ee"], [1, "ee"], [1, "ee"]]
    assert seen["mode_messages"] == 1  # only mode 0 reached the kernel
    assert seen["cs_high"] == 1
    assert seen["mode_during"] == seen["before"][0]  # 3-wire kept while serving


def test_the_kernel_refusing_full_duplex_is_trans_err(seen: dict[str, Any]) -> None:
    assert seen["full_duplex"] == [2, "eeee"]  # EINVAL on a 3-wire device; rx untouched


def test_a_speed_over_the_probed_maximum_is_param_err(seen: dict[str, Any]) -> None:
    assert seen["too_fast"] == 1


def test_sixteen_bit_words_reach_the_bit_banger(seen: dict[str, Any]) -> None:
    assert seen["words16"] == [0, "0000"]


def test_the_installed_daemon_serves_the_node(seen: dict[str, Any]) -> None:
    assert seen["daemon"]["answer"] == [0, 1]  # and it exited 0 on SIGTERM
    assert "/dev/spidev0.0: SpiConfig(cs_max_number=1" in seen["daemon"]["log"]
    assert seen["after_daemon"] == seen["before"]


def test_a_hold_delay_runs_on_the_real_kernel(seen: dict[str, Any]) -> None:
    assert seen["hold_delay"] == 0
