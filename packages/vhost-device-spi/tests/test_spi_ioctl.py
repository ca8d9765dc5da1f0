"""spidev_ioctl's marshalling against the kernel's own <linux/spi/spidev.h>: the ioctl
numbers, mode bits and struct spi_ioc_transfer layout a C program compiled here sees,
and the real kernel's answers on files that are not a spidev. (test_spi_lm70llp.py runs
the whole path on a real kernel SPI controller in a guest.)"""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from vhost_device_spi import spidev_ioctl as ioc
from vhost_device_spi.errors import ControllerError
from vhost_device_spi.host import SpidevController, virtio_to_spidev_mode
from vhost_device_spi.protocol import Mode

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <linux/spi/spidev.h>

#define SHOW(name) printf(#name " %lu\n", (unsigned long)(name))

int main(void) {
    struct spi_ioc_transfer t;
    unsigned char *p = (unsigned char *)&t;
    SHOW(sizeof(struct spi_ioc_transfer));
    SHOW(SPI_IOC_MESSAGE(1)); SHOW(SPI_IOC_MESSAGE(3)); SHOW(SPI_IOC_MESSAGE(511));
    SHOW(SPI_IOC_RD_MODE32); SHOW(SPI_IOC_WR_MODE32);
    SHOW(SPI_IOC_RD_BITS_PER_WORD); SHOW(SPI_IOC_WR_BITS_PER_WORD); SHOW(SPI_IOC_RD_MAX_SPEED_HZ);
    SHOW(SPI_CPHA); SHOW(SPI_CPOL); SHOW(SPI_CS_HIGH); SHOW(SPI_LSB_FIRST); SHOW(SPI_LOOP);
    SHOW(SPI_TX_DUAL); SHOW(SPI_TX_QUAD); SHOW(SPI_TX_OCTAL);
    SHOW(SPI_RX_DUAL); SHOW(SPI_RX_QUAD); SHOW(SPI_RX_OCTAL);
    memset(&t, 0, sizeof t);
    t.tx_buf = 0x1122334455667788ULL; t.rx_buf = 0x99aabbccddeeff00ULL; t.len = 4096;
    t.speed_hz = 12345678; t.delay_usecs = 513; t.bits_per_word = 16; t.cs_change = 1;
    t.tx_nbits = 4; t.rx_nbits = 2; t.word_delay_usecs = 7;
    printf("bytes ");
    for (size_t i = 0; i < sizeof t; i++) printf("%02x", p[i]);
    printf("\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel_header(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    where = tmp_path_factory.mktemp("spidev_h")
    (where / "probe.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-o", where / "probe", where / "probe.c"], check=True)
    out = subprocess.run([where / "probe"], capture_output=True, text=True, check=True).stdout
    return dict(line.rsplit(" ", 1) for line in out.splitlines())


def test_ioctl_numbers_are_the_kernels(kernel_header: dict[str, str]) -> None:
    assert int(kernel_header["SPI_IOC_MESSAGE(1)"]) == ioc.spi_ioc_message(1)
    assert int(kernel_header["SPI_IOC_MESSAGE(3)"]) == ioc.spi_ioc_message(3)
    assert int(kernel_header["SPI_IOC_MESSAGE(511)"]) == ioc.spi_ioc_message(511)
    assert int(kernel_header["SPI_IOC_RD_MODE32"]) == ioc.SPI_IOC_RD_MODE32
    assert int(kernel_header["SPI_IOC_WR_MODE32"]) == ioc.SPI_IOC_WR_MODE32
    assert int(kernel_header["SPI_IOC_RD_BITS_PER_WORD"]) == ioc.SPI_IOC_RD_BITS_PER_WORD
    assert int(kernel_header["SPI_IOC_WR_BITS_PER_WORD"]) == ioc.SPI_IOC_WR_BITS_PER_WORD
    assert int(kernel_header["SPI_IOC_RD_MAX_SPEED_HZ"]) == ioc.SPI_IOC_RD_MAX_SPEED_HZ


def test_a_message_has_at_most_511_transfers() -> None:
    with pytest.raises(ValueError, match="1..511"):
        ioc.spi_ioc_message(512)  # SPI_MSGSIZE would be 0 in the kernel's macro


def test_mode_bits_are_the_kernels(kernel_header: dict[str, str]) -> None:
    for name in (
        "SPI_CPHA",
        "SPI_CPOL",
        "SPI_CS_HIGH",
        "SPI_LSB_FIRST",
        "SPI_LOOP",
        "SPI_TX_DUAL",
        "SPI_TX_QUAD",
        "SPI_TX_OCTAL",
        "SPI_RX_DUAL",
        "SPI_RX_QUAD",
        "SPI_RX_OCTAL",
    ):
        assert int(kernel_header[name]) == getattr(ioc, name), name


def test_virtio_mode_maps_to_spidev_mode() -> None:
    assert virtio_to_spidev_mode(int(Mode.CPHA | Mode.CPOL)) == ioc.SPI_CPHA | ioc.SPI_CPOL
    assert virtio_to_spidev_mode(int(Mode.CS_HIGH | Mode.LSB_FIRST)) == 0xC
    assert virtio_to_spidev_mode(int(Mode.LOOP)) == ioc.SPI_LOOP  # bit 4 in virtio, 5 here


def test_transfer_struct_is_packed_as_the_kernel_lays_it_out(
    kernel_header: dict[str, str],
) -> None:
    assert int(kernel_header["sizeof(struct spi_ioc_transfer)"]) == ioc.TRANSFER.size == 32
    packed = ioc.IocTransfer(
        tx_buf=0x1122334455667788,
        rx_buf=0x99AABBCCDDEEFF00,
        length=4096,
        speed_hz=12345678,
        delay_usecs=513,
        bits_per_word=16,
        cs_change=1,
        tx_nbits=4,
        rx_nbits=2,
        word_delay_usecs=7,
    ).pack()
    assert packed.hex() == kernel_header["bytes"]


def test_a_message_packs_its_transfers_back_to_back() -> None:
    one, two = ioc.IocTransfer(1, 2, 3), ioc.IocTransfer(4, 5, 6, cs_change=1)
    assert ioc.pack_message([one, two]) == one.pack() + two.pack()


def test_a_missing_spidev_is_one_clear_error() -> None:
    with pytest.raises(ControllerError, match=r"cannot open /dev/spidev9\.9: No such file"):
        SpidevController("/dev/spidev9.9")


def test_a_file_that_is_not_a_spidev_is_refused() -> None:
    # the real kernel answers spidev's ioctls on /dev/null with ENOTTY
    with pytest.raises(ControllerError, match="/dev/null: not a spidev device") as caught:
        SpidevController("/dev/null")
    assert caught.value.path == "/dev/null"


def test_the_message_ioctl_reaches_the_kernel() -> None:
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        with pytest.raises(OSError) as caught:
            ioc.message(fd, [ioc.IocTransfer(0, 0, 1)])
        assert caught.value.errno == errno.ENOTTY  # well-formed, but not a spidev
    finally:
        os.close(fd)
