"""The device through a real socket, the test playing the virtio-spi driver per the
spec (no QEMU device and no guest driver exist for spi here): the config space, every
field of the transfer head, the tx/rx rules, batching, the simulated loopback."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from spi_driver import OK, PARAM_ERR, TRANS_ERR, head, spi_driver

from vhost_device_spi.errors import TransferError
from vhost_device_spi.host import SimController, Transfer
from vhost_device_spi.protocol import Mode, SpiConfig


def test_config_space_is_the_controllers(tmp_path: Path) -> None:
    with spi_driver(SimController(), tmp_path) as driver:
        raw = driver.config()
    fields = struct.unpack("<4B7I", raw)
    assert fields == (1, 1, 0b011, 0b011, 0x80008080, 0x7F, 50_000_000, 0, 0, 65_535_000, 0)
    assert raw == SimController.config.encode()


def test_full_duplex_reads_back_what_it_sent(tmp_path: Path) -> None:
    with spi_driver(SimController(), tmp_path) as driver:
        answer = driver.transfer(head(), b"\x01\x02\x03\xff", 4)
    assert (answer.result, answer.rx, answer.used) == (OK, b"\x01\x02\x03\xff", 5)


def test_half_duplex_write_has_no_rx(tmp_path: Path) -> None:
    sim = SimController()
    with spi_driver(sim, tmp_path) as driver:
        answer = driver.transfer(head(), b"cmd", 0)
    assert (answer.result, answer.used) == (OK, 1)
    ((_, (transfer,)),) = sim.history
    assert (transfer.tx, transfer.rx_len) == (b"cmd", 0)


def test_half_duplex_read_clocks_in_the_idle_line(tmp_path: Path) -> None:
    sim = SimController()
    with spi_driver(sim, tmp_path) as driver:
        answer = driver.transfer(head(), None, 6)
    assert (answer.result, answer.rx, answer.used) == (OK, bytes(6), 7)
    ((_, (transfer,)),) = sim.history
    assert (transfer.tx, transfer.rx_len) == (None, 6)


def test_every_head_field_reaches_the_controller(tmp_path: Path) -> None:
    sim = SimController()
    th = head(bits_per_word=16, cs_change=1, tx_nbits=4, rx_nbits=2, freq=12_345_678)
    th = head(
        **{
            **th.__dict__,
            "mode": int(Mode.CPHA | Mode.CPOL | Mode.CS_HIGH | Mode.LSB_FIRST | Mode.LOOP),
        }
    )
    with spi_driver(sim, tmp_path) as driver:
        assert driver.transfer(th, b"abcd", 4).result == OK
    ((mode, (transfer,)),) = sim.history
    assert mode == 0b11111
    assert transfer == Transfer(
        tx=b"abcd",
        rx_len=4,
        speed_hz=12_345_678,
        bits_per_word=16,
        cs_change=1,
        tx_nbits=4,
        rx_nbits=2,
    )


@pytest.mark.parametrize(("hold_ns", "delay_us"), [(0, 0), (1, 1), (1000, 1), (1001, 2)])
def test_the_hold_delay_becomes_microseconds_rounded_up(
    hold_ns: int, delay_us: int, tmp_path: Path
) -> None:
    sim = SimController()
    with spi_driver(sim, tmp_path) as driver:
        assert driver.transfer(head(cs_delay_hold_ns=hold_ns), b"d", 1).result == OK
    ((_, (transfer,)),) = sim.history
    assert transfer.delay_usecs == delay_us


def test_the_hold_delay_has_spidevs_16_bit_limit(tmp_path: Path) -> None:
    with spi_driver(SimController(), tmp_path) as driver:
        assert driver.transfer(head(cs_delay_hold_ns=65_535_000), b"d", 1).result == OK
        assert driver.transfer(head(cs_delay_hold_ns=65_535_001), b"d", 1).result == PARAM_ERR


def test_reserved_bytes_are_ignored(tmp_path: Path) -> None:
    raw = bytearray(head().encode())
    raw[5:8] = b"\x01\x02\x03"
    with spi_driver(SimController(), tmp_path) as driver:
        assert driver.transfer(bytes(raw), b"x", 1).result == OK


def test_a_batch_is_one_message_in_order(tmp_path: Path) -> None:
    sim = SimController()
    with spi_driver(sim, tmp_path) as driver:
        for i in range(10):
            driver.post(head(cs_change=i % 2), bytes([i]) * 4, 4)
        driver.publish()
        answers = driver.answers()
    assert [a.rx for a in answers] == [bytes([i]) * 4 for i in range(10)]
    assert {a.result for a in answers} == {OK}
    ((_, transfers),) = sim.history
    assert [t.tx for t in transfers] == [bytes([i]) * 4 for i in range(10)]
    assert [t.cs_change for t in transfers] == [i % 2 for i in range(10)]


def test_a_mode_change_starts_another_message(tmp_path: Path) -> None:
    sim = SimController()
    with spi_driver(sim, tmp_path) as driver:
        for mode in (0, 0, 1, 1, 0):
            driver.post(head(mode=mode), b"ab", 2)
        driver.publish()
        assert {a.result for a in driver.answers()} == {OK}
    assert [(mode, len(transfers)) for mode, transfers in sim.history] == [(0, 2), (1, 2), (0, 1)]


def test_a_bad_request_in_a_batch_fails_alone(tmp_path: Path) -> None:
    sim = SimController()
    with spi_driver(sim, tmp_path) as driver:
        driver.post(head(), b"1", 1)
        driver.post(head(chip_select_id=3), b"2", 1)
        driver.post(head(), b"3", 1)
        driver.publish()
        answers = driver.answers()
    assert [(a.result, a.rx) for a in answers] == [(OK, b"1"), (PARAM_ERR, b"\xee"), (OK, b"3")]
    ((_, transfers),) = sim.history  # the bad one never reached the bus
    assert [t.tx for t in transfers] == [b"1", b"3"]


def test_big_transfers_split_at_the_message_limit(tmp_path: Path) -> None:
    class Small(SimController):
        message_limit = 8

    sim = Small()
    with spi_driver(sim, tmp_path) as driver:
        for _ in range(3):
            driver.post(head(), b"12345", 5)
        driver.post(head(), b"123456789", 9)  # alone over the limit
        driver.publish()
        answers = driver.answers()
    assert [a.result for a in answers] == [OK, OK, OK, TRANS_ERR]
    assert [len(t) for _, t in sim.history] == [1, 1, 1]


# Each PARAM_ERR the spec asks for (a field invalid, or a feature the config does not
# offer), against a config that offers little.
NARROW = SpiConfig(
    cs_max_number=2,
    max_cs_hold_ns=0,
    cs_change_supported=False,
    bits_per_word_mask=1 << 7,  # 8 bits only
    max_freq_hz=1_000_000,
)
PARAM_ERRORS = {
    "chip select past cs_max_number": (head(chip_select_id=2), b"ab", 2),
    "bits_per_word not in the mask": (head(bits_per_word=16), b"ab", 2),
    "bits_per_word 0": (head(bits_per_word=0), b"ab", 2),
    "bits_per_word 33": (head(bits_per_word=33), b"ab", 2),
    "cs_change unsupported": (head(cs_change=1), b"ab", 2),
    "cs_change not 0 or 1": (head(cs_change=2), b"ab", 2),
    "tx_nbits dual unsupported": (head(tx_nbits=2), b"ab", 2),
    "rx_nbits quad unsupported": (head(rx_nbits=4), b"ab", 2),
    "tx_nbits 3 invalid": (head(tx_nbits=3), b"ab", 2),
    "rx_nbits 16 invalid": (head(rx_nbits=16), None, 2),
    "CPHA=1 unsupported": (head(mode=int(Mode.CPHA)), b"ab", 2),
    "CPOL=1 unsupported": (head(mode=int(Mode.CPOL)), b"ab", 2),
    "CS_HIGH unsupported": (head(mode=int(Mode.CS_HIGH)), b"ab", 2),
    "LSB_FIRST unsupported": (head(mode=int(Mode.LSB_FIRST)), b"ab", 2),
    "LOOP unsupported": (head(mode=int(Mode.LOOP)), b"ab", 2),
    "undefined mode bit": (head(mode=1 << 5), b"ab", 2),
    "freq over max_freq_hz": (head(freq=1_000_001), b"ab", 2),
    "word delay unsupported": (head(word_delay_ns=1), b"ab", 2),
    "cs setup delay unsupported": (head(cs_setup_ns=1), b"ab", 2),
    "cs hold delay unsupported": (head(cs_delay_hold_ns=1), b"ab", 2),
    "cs inactive delay unsupported": (head(cs_change_delay_inactive_ns=1), b"ab", 2),
    "full duplex, tx longer than rx": (head(), b"abc", 2),
    "full duplex, rx longer than tx": (head(), b"ab", 3),
    "neither tx nor rx": (head(), None, 0),
}


class Narrow(SimController):
    config = NARROW


@pytest.mark.parametrize("case", PARAM_ERRORS, ids=list(PARAM_ERRORS))
def test_param_err(case: str, tmp_path: Path) -> None:
    th, tx, rx_len = PARAM_ERRORS[case]
    sim = Narrow()
    with spi_driver(sim, tmp_path) as driver:
        answer = driver.transfer(th, tx, rx_len)
        assert (answer.result, answer.used) == (PARAM_ERR, rx_len + 1)
        assert answer.rx == b"\xee" * rx_len  # rx untouched
        assert driver.transfer(head(), b"ok", 2).result == OK  # the queue goes on
    assert len(sim.history) == 1


def test_the_narrow_config_takes_a_plain_transfer(tmp_path: Path) -> None:
    with spi_driver(Narrow(), tmp_path) as driver:
        assert driver.transfer(head(chip_select_id=1, freq=1_000_000), b"ab", 2).result == OK
        assert driver.transfer(head(freq=0), None, 2).result == OK  # 0: the device's speed


def test_words_wider_than_a_byte_need_whole_words(tmp_path: Path) -> None:
    with spi_driver(SimController(), tmp_path) as driver:
        assert driver.transfer(head(bits_per_word=16), b"abc", 3).result == PARAM_ERR
        assert driver.transfer(head(bits_per_word=32), b"abcdef", 6).result == PARAM_ERR
        assert driver.transfer(head(bits_per_word=32), b"abcd", 4).result == OK


class Failing(SimController):
    """A controller whose every message fails, as a spidev's ioctl does when the
    hardware does (no spidev exists here to fail for real)."""

    def transfer(self, mode: int, transfers: Sequence[Transfer]) -> list[bytes]:
        raise TransferError("sim: Remote I/O error", "sim")


def test_a_failed_message_is_trans_err_for_each_request(tmp_path: Path) -> None:
    with spi_driver(Failing(), tmp_path) as driver:
        driver.post(head(), b"ab", 2)
        driver.post(head(), b"cd", 0)
        driver.publish()
        answers = driver.answers()
    assert [(a.result, a.rx, a.used) for a in answers] == [
        (TRANS_ERR, b"\xee\xee", 3),
        (TRANS_ERR, b"", 1),
    ]
