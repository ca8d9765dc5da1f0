"""vhost-device-spi's request queue: fuzzed transfer heads (every field, valid for the
simulated controller or one field out of range), tx and rx sizes (full and half
duplex, unequal, not whole words, none), heads cut short or split across descriptors,
no result byte, buffers outside memory; batches of them against `SimController`
(MOSI looped to MISO).

Invariants:
- nothing but VhostUserError escapes `handle_queue`;
- every request is completed once, in its batch: used length rx size + 1 with a result
  byte, 0 when it has no writable byte (or its chain is broken);
- the result follows a model of the simulated controller's config written from the
  spec, not from the device's checks: PARAM_ERR exactly for the heads and sizes it
  refuses, TRANS_OK otherwise, and a TRANS_OK read returns what was written (the
  loopback) or zeros for a half-duplex read;
- what reaches the controller is exactly the valid transfers, in order, as messages
  of one mode each and at most SPI_IOC_MESSAGE's transfer count;
- afterwards a good 4-byte full-duplex transfer is echoed.
"""

from __future__ import annotations

import struct

import atheris
from harness import Rig, check

from vhost_device_spi.device import SpiBackend
from vhost_device_spi.host import MAX_CS_HOLD_NS, SimController
from vhost_device_spi.protocol import HEAD_SIZE, Result
from vhost_device_spi.spidev_ioctl import MAX_MESSAGE

QUEUE = 128
HEAD = struct.Struct("<5B3x6I")
MAX_FREQ = 50_000_000
#: (field index, a valid value, out-of-range values) for each head field.
FIELDS = [
    (0, 0, [1, 255]),  # chip select: one
    (1, 8, [0, 7, 33, 255]),  # bits per word: 8, 16, 32
    (2, 0, [2, 255]),  # cs_change
    (3, 1, [3, 5, 8, 255]),  # tx_nbits (octal unsupported)
    (4, 1, [3, 8, 9]),
    (5, 0, [0x20, 0x80, 0xFFFFFFFF]),  # mode: five defined bits, all supported
    (6, 1_000_000, [MAX_FREQ + 1, 0xFFFFFFFF]),
    (7, 0, [1]),  # word delay, cs setup: unsupported
    (8, 0, [1]),
    (9, 0, [MAX_CS_HOLD_NS + 1]),
    (10, 0, [1, 0xFFFFFFFF]),
]
GOOD = {
    1: [8, 16, 32],
    2: [0, 1],
    3: [0, 1, 2, 4],
    4: [0, 1, 2, 4],
    5: list(range(32)),
    6: [0, 1, MAX_FREQ],
    9: [0, 1000, MAX_CS_HOLD_NS],
}


def valid(fields: list[int], tx: int, rx: int) -> bool:
    """The spec's rules against SimController's config (README "The simulated
    controller"), independently of vhost_device_spi.protocol."""
    cs, bits, cs_change, tx_nbits, rx_nbits, mode, freq, wd, setup, hold, inactive = fields
    word = 1 if bits <= 8 else 2 if bits <= 16 else 4
    return (
        (tx or rx) > 0
        and (not tx or not rx or tx == rx)
        and cs == 0
        and bits in (8, 16, 32)
        and (tx or rx) % word == 0
        and cs_change in (0, 1)
        and tx_nbits in (0, 1, 2, 4, 8)
        and rx_nbits in (0, 1, 2, 4, 8)
        and not (tx and tx_nbits == 8)
        and not (rx and rx_nbits == 8)
        and mode < 32
        and freq <= MAX_FREQ
        and wd == setup == inactive == 0
        and hold <= MAX_CS_HOLD_NS
    )


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    rig = Rig([QUEUE])
    controller = SimController(keep=1 << 16)
    backend = SpiBackend(controller)
    (vring,) = rig.vrings
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            rig.reset_scratch()
            _batch(fdp, rig, controller, backend)
        rig.reset_scratch()
        head = HEAD.pack(0, 8, 0, 1, 1, 0, 1000, 0, 0, 0, 0)
        good = rig.post(0, [head, b"ping"], [4, 1])
        check(good is not None, "no room for the good transfer")
        rig.publish(0)
        backend.handle_queue(vring)
        check(rig.used(0) == [(good, 5)], "the good transfer's used length")
        check(rig.written(0, good, 5) == b"ping\x00", "the good transfer's echo")  # type: ignore[arg-type]
    finally:
        controller.close()
        rig.close()


def _batch(
    fdp: atheris.FuzzedDataProvider, rig: Rig, controller: SimController, backend: SpiBackend
) -> None:
    expect: dict[int, tuple[int, int | None, bytes]] = {}  # head -> used, result, rx data
    transfers: list[tuple[int, bytes | None, int]] = []  # (mode, tx, rx_len) sent, in order
    for _ in range(fdp.ConsumeIntInRange(1, 12)):
        fields = [f[1] for f in FIELDS]
        for index, choices in GOOD.items():
            fields[index] = fdp.PickValueInList(choices)
        if fdp.ConsumeIntInRange(0, 3) == 0:
            index, _, bad = FIELDS[fdp.ConsumeIntInRange(0, len(FIELDS) - 1)]
            fields[index] = fdp.PickValueInList(bad)
        shape = fdp.ConsumeIntInRange(0, 3)
        size = fdp.PickValueInList([4, 8, 2, 1, 3, 64, 0, 6])
        tx = size if shape in (0, 1) else 0
        rx = size if shape in (0, 2) else 0
        if shape == 3:
            tx, rx = fdp.ConsumeIntInRange(0, 9), fdp.ConsumeIntInRange(0, 9)
        payload = fdp.ConsumeBytes(tx).ljust(tx, b"\xa5")
        head = HEAD.pack(*fields)
        kind = fdp.ConsumeIntInRange(0, 11)
        if kind == 11:
            chain = rig.post_raw(0, [(0xFFFF_0000_0000, HEAD_SIZE, False), (0, 1, True)])
            if chain is not None:
                expect[chain] = (0, None, b"")
            continue
        readable = [head, payload] if payload else [head]
        if kind == 10:  # a short head
            readable = [head[: fdp.ConsumeIntInRange(0, HEAD_SIZE - 1)]]
            tx = 0
        elif kind == 9:  # split anywhere
            whole = head + payload
            cut = fdp.ConsumeIntInRange(1, len(whole) - 1)
            readable = [whole[:cut], whole[cut:]]
        writable = [] if kind == 8 else ([rx, 1] if rx and kind != 7 else [rx + 1])
        chain = rig.post(0, [r for r in readable if r], writable)
        if chain is None:
            continue
        if kind == 8:
            expect[chain] = (0, None, b"")
        elif kind == 10 or not valid(fields, tx, rx):
            expect[chain] = (rx + 1, Result.PARAM_ERR, b"")
        else:
            echo = payload if tx else bytes(rx)
            expect[chain] = (rx + 1, Result.TRANS_OK, echo[:rx])
            transfers.append((fields[5], payload if tx else None, rx))
    rig.publish(0)
    sent = len(controller.history)
    backend.handle_queue(rig.vrings[0])
    used = rig.used(0)
    check(sorted(h for h, _ in used) == sorted(expect), f"completed {used}, posted {expect}")
    for chain, length in used:
        want, result, echo = expect[chain]
        check(length == want, f"request {chain}: used {length}, expected {want}")
        if result is not None:
            written = rig.written(0, chain, length)
            check(written[-1] == result, f"request {chain}: result {written[-1]}, not {result}")
            check(written[:-1][: len(echo)] == echo, f"request {chain}: rx data")
    messages = list(controller.history)[sent:]
    got = []
    for mode, message in messages:
        check(1 <= len(message) <= MAX_MESSAGE, f"a message of {len(message)} transfers")
        got += [(mode, t.tx, t.rx_len) for t in message]
    check(got == transfers, f"the controller got {got}, not {transfers}")
